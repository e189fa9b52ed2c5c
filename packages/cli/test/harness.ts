import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The command as users run it: bin/tsbuild, the shell script npm links as `tsbuild`. */
export const BIN = path.join(REPO, 'packages/cli/bin/tsbuild');
export const HELLO = path.join(REPO, 'fixtures/hello');

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A store in a temp dir, and `tsbuild` run against it as a real child process. */
export class TestStore {
  readonly root: string;
  readonly tmp: string;

  constructor() {
    this.tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-cli-'));
    this.root = path.join(this.tmp, 'store');
  }

  run(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Result> {
    return new Promise((resolve, reject) => {
      const child = spawn(BIN, args, {
        cwd: opts.cwd ?? REPO,
        env: { ...process.env, TSBUILD_ROOT: this.root, ...opts.env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.stdin.end(opts.input ?? '');
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  }

  spawn(args: string[]) {
    return spawn(BIN, args, { cwd: REPO, env: { ...process.env, TSBUILD_ROOT: this.root }, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Imports a busybox-static rootfs as `busybox` (docker.io/library/busybox:latest). */
  async importBusybox(name = 'busybox'): Promise<string> {
    const rootfs = path.join(this.tmp, `rootfs-${name.replace(/[^a-z0-9]/g, '_')}`);
    makeBusyboxRootfs(rootfs);
    const r = await this.run(['import', rootfs, name]);
    if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
    return rootfs;
  }

  /** A context directory with the given files. */
  async context(files: Record<string, string>): Promise<string> {
    const dir = await fsp.mkdtemp(path.join(this.tmp, 'ctx-'));
    for (const [name, content] of Object.entries(files)) {
      await fsp.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await fsp.writeFile(path.join(dir, name), content);
    }
    return dir;
  }

  async cleanup(): Promise<void> {
    await fsp.rm(this.tmp, { recursive: true, force: true });
  }
}

/** Mount points under `dir` in this mount namespace (the host's view). */
export function mountsUnder(dir: string): string[] {
  const r = spawnSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((t) => t.startsWith(dir));
}

/** Processes whose command line mentions `needle` (other than this test). */
export function processesMatching(needle: string): string[] {
  const r = spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.includes(needle) && !l.includes('ps -eo'));
}

export const IMAGE_ID_LINE = /^[0-9a-f]{64}$/;
