import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { run, type Mount, type RunSpec } from '../src/index.js';
import { Collector } from './collector.js';
import { tsbuildCgroups } from './cgroup-leftovers.js';

/**
 * A busybox-static root filesystem in a temp dir (the lower layer) and a fresh overlay over it per
 * container, built by hand the way the snapshotter would describe it.
 */
export interface Fixture {
  dir: string;
  lower: string;
  /** A new upper/work pair and the overlay Mount over `lower`. */
  overlay(): { upper: string; mounts: Mount[] };
  scratch(): string;
  cleanup(): void;
}

export function makeBusyboxFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'tsbuild-runtime-'));
  const lower = join(dir, 'lower');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root']) mkdirSync(join(lower, d), { recursive: true });
  copyFileSync('/bin/busybox', join(lower, 'bin/busybox'));
  execFileSync('chmod', ['0755', join(lower, 'bin/busybox')]);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(lower, 'bin', a));
  writeFileSync(join(lower, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n');
  writeFileSync(join(lower, 'etc/group'), 'root:x:0:\nuser:x:1000:\nwheel:x:27:\n');
  chmodSync(join(lower, 'tmp'), 0o1777);
  writeFileSync(join(lower, 'marker'), 'this is the rootfs\n');
  let n = 0;
  return {
    dir,
    lower,
    overlay() {
      const c = join(dir, `c${n++}`);
      const upper = join(c, 'upper');
      const work = join(c, 'work');
      mkdirSync(upper, { recursive: true });
      mkdirSync(work, { recursive: true });
      return { upper, mounts: [{ type: 'overlay', source: 'overlay', options: ['index=off', `lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] }] };
    },
    scratch() {
      return join(dir, `scratch${n++}`);
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every mount, in any process's mount namespace, whose line in mountinfo mentions `needle`. */
export function mountsMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    for (const line of text.split('\n')) if (line.includes(needle)) found.push(`${pid}: ${line}`);
  }
  return found;
}

/** Pids of processes whose environment contains `entry` (KEY=VALUE). */
export function processesWithEnv(entry: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry)) found.push(Number(pid));
    } catch {
      // exited, or a kernel thread
    }
  }
  return found;
}

export async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A Writable that collects text. */
export { Collector } from './collector.js';

/**
 * The test file's fixture, made before its tests and removed after them (call at the top level).
 * With `noLeftoverCgroups`, every test must also leave no cgroup of tsbuild's behind.
 */
export function useBusyboxFixture(opts: { noLeftoverCgroups?: boolean } = {}): Fixture {
  let made: Fixture | undefined;
  beforeAll(() => {
    made = makeBusyboxFixture();
  });
  afterAll(() => made?.cleanup());
  if (opts.noLeftoverCgroups) {
    afterEach(() => {
      expect(tsbuildCgroups()).toEqual([]);
    });
  }
  const fx = (): Fixture => {
    if (made === undefined) throw new Error('the busybox fixture is made in beforeAll');
    return made;
  };
  return {
    get dir() {
      return fx().dir;
    },
    get lower() {
      return fx().lower;
    },
    overlay: () => fx().overlay(),
    scratch: () => fx().scratch(),
    cleanup: () => fx().cleanup(),
  };
}

/**
 * `sh -c script` in a container on a fresh overlay of `fx` (or `opts.overlay`), PATH=/bin, cwd /:
 * its status and what it printed, and the overlay's upper dir and the scratch dir it used.
 */
export async function shIn(fx: Fixture, script: string, extra: Partial<RunSpec> = {}, opts: { stdin?: Readable; overlay?: { upper: string; mounts: Mount[] } } = {}) {
  const { upper, mounts } = opts.overlay ?? fx.overlay();
  const scratchDir = fx.scratch();
  const out = new Collector();
  const err = new Collector();
  const res = await run(
    { args: ['sh', '-c', script], env: ['PATH=/bin'], cwd: '/', rootfs: mounts, scratchDir, ...extra },
    { stdout: out, stderr: err, ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}) },
  );
  return { ...res, out: out.text, err: err.text, upper, scratchDir };
}
