import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CliError, Flags } from '../src/cli-kit.js';
import { splitGlobalFlags } from '../src/global-flags.js';
import { REPO, TestStore } from './harness.js';

describe('splitGlobalFlags', () => {
  it('takes the global flags before the first word, in both spellings, and leaves the rest', () => {
    expect(splitGlobalFlags(['--root', '/a', 'build', '--root', '/b', '.'])).toEqual({ globals: ['--root', '/a'], rest: ['build', '--root', '/b', '.'] });
    expect(splitGlobalFlags(['--root=/a', 'images'])).toEqual({ globals: ['--root=/a'], rest: ['images'] });
    expect(splitGlobalFlags(['--root=/a', '--help'])).toEqual({ globals: ['--root=/a'], rest: ['--help'] });
  });

  it('knows booleans and short forms of the definitions it is given', () => {
    const defs = { debug: Flags.boolean({ char: 'D' }), root: Flags.string({ char: 'r' }) };
    expect(splitGlobalFlags(['-Dr', '/x', '--no-debug', 'images'], defs)).toEqual({ globals: ['-Dr', '/x', '--no-debug'], rest: ['images'] });
    expect(splitGlobalFlags(['-r/x', 'images'], defs)).toEqual({ globals: ['-r/x'], rest: ['images'] });
  });

  it('refuses any other flag before the command with status 2', () => {
    expect(() => splitGlobalFlags(['--format', 'json', 'images'])).toThrow(/^unknown global flag --format: /);
    const err = (() => {
      try {
        splitGlobalFlags(['-q', 'images']);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(2);
    expect((err as CliError).message).toMatch(/^unknown global flag -q: /);
  });
});

/** buildah's habits (issue 16 point 6): global flags before the verb, `version` and `info`. */
describe('global flags before the command, version and info', () => {
  const t = new TestStore();
  const other = new TestStore();
  beforeAll(async () => {
    await other.importBusybox('elsewhere:1');
  });
  afterAll(async () => {
    await t.cleanup();
    await other.cleanup();
  });

  it("a command that loaded the libc addon leaves by _exit(2) after node's 'exit' listeners: its output whole, its status kept, its code cache written", async () => {
    const cache = path.join(REPO, 'packages/cli/bundle/commands/from.cjs.cache');
    rmSync(cache, { force: true });
    expect(await other.run(['from', '--name', 'exit-probe', 'elsewhere:1'])).toMatchObject({ code: 0, stdout: 'exit-probe\n', stderr: '' });
    // Written by an 'exit' listener of load-command.cjs, which ran before the _exit.
    expect(existsSync(cache)).toBe(true);
    expect((await other.run(['rm', 'exit-probe'])).code).toBe(0);
    expect((await other.run(['rm', 'exit-probe'])).code).toBe(1);
    // Under a node flag such as --cpu-prof node exits itself, and writes what the flag collected.
    const profiles = path.join(other.root, 'profiles');
    execFileSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profiles}`, path.join(REPO, 'packages/cli/bin/run.cjs'), 'from', '--name', 'exit-probe', 'elsewhere:1'], {
      env: { ...process.env, TSBUILD_ROOT: other.root },
      stdio: 'ignore',
    });
    expect(readdirSync(profiles).filter((f) => f.endsWith('.cpuprofile'))).toHaveLength(1);
    expect((await other.run(['rm', 'exit-probe'])).code).toBe(0);
  });

  it("from and commit carry neither the runtime nor the registry client: each is a chunk, read on import(), that shares the command's packages", async () => {
    const bundle = path.join(REPO, 'packages/cli/bundle');
    for (const id of ['from', 'commit']) {
      const text = readFileSync(path.join(bundle, 'commands', `${id}.cjs`), 'latin1');
      const requires = [...text.matchAll(/(.{0,10})require\("@tsbuild\/([\w-]+)"\)/g)];
      expect(new Set(requires.map((m) => m[2]))).toEqual(new Set(['runtime', 'registry-client']));
      // Each in an import(), none at the top of the file.
      for (const m of requires) expect(m[1], `${id}: ${m[0]}`).toBe('=>__toESM(');
      expect(text).toContain('require("../load-command.cjs").share(');
    }
    expect(readdirSync(path.join(bundle, 'chunks')).filter((f) => f.endsWith('.cjs')).sort()).toEqual(['registry-client.cjs', 'runtime.cjs']);
    // The runtime's error for a bad capability is one of the command's own errors (the same
    // classes on both sides): a one-line message and status 1, not an internal error.
    const ctr = (await other.run(['from', 'elsewhere:1'])).stdout.trim();
    expect(await other.run(['run', '--cap-add', 'CAP_NOPE', ctr, '--', 'true'])).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^Error: --cap-add: unknown capability CAP_NOPE \(this kernel knows \d+: [^\n]*\)\n$/) });
    expect((await other.run(['rm', ctr])).code).toBe(0);
  });

  it('--root DIR and --root=DIR before the command select that store, as after it', async () => {
    // TSBUILD_ROOT (the harness's) points at an empty store: only the flag can find the image.
    for (const args of [['--root', other.root, 'images'], [`--root=${other.root}`, 'images'], ['images', '--root', other.root]]) {
      const r = await t.run(args);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^elsewhere +1 /m);
    }
    expect((await t.run(['images'])).stdout).not.toContain('elsewhere');
  });

  it('a global flag after the command overrides the one before it (last wins, as with pflag)', async () => {
    const r = await t.run(['--root', t.root, 'images', '--root', other.root]);
    expect(r.stdout).toMatch(/^elsewhere +1 /m);
  });

  it('an unknown flag before the command is a one-line usage error with status 2', async () => {
    const r = await t.run(['--no-such-flag', 'images']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Error: unknown global flag --no-such-flag: .*--root.*\n$/);
    expect(r.stderr.split('\n')).toHaveLength(2);
    // A command's own flag is not a global one either.
    expect((await t.run(['-q', 'images'])).code).toBe(2);
    const missing = await t.run(['--root']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('Error: Flag --root expects a value\n');
  });

  it('--help lists the global flags; --version stays one line', async () => {
    const help = await t.run(['--root', other.root, '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/GLOBAL FLAGS[^\n]*\n +--root=<value> +store root directory/);
    const v = await t.run(['--version']);
    expect(v.stdout).toMatch(/^tsbuild \d+\.\d+\.\d+ linux-\S+ node-v\d+\.\d+\.\d+\n$/);
  });

  it('version prints buildah-style Field: value lines (Version, Node Version, Git Commit, OS/Arch)', async () => {
    const r = await t.run(['--root', other.root, 'version']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    const fields = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
    expect(fields.Version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(fields['Node Version']).toBe(process.version);
    expect(fields['OS/Arch']).toBe(`linux/${{ x64: 'amd64', arm64: 'arm64' }[process.arch as 'x64' | 'arm64']}`);
    // The bundle is built from a git checkout here, so the commit is known.
    expect(fields['Git Commit']).toMatch(/^[0-9a-f]{40}(-dirty)?$/);
    expect(Object.keys(fields)).toEqual(['Version', 'Node Version', 'Git Commit', 'OS/Arch']);
    const json = JSON.parse((await t.run(['version', '--json'])).stdout);
    expect(json.version).toBe(fields.Version);
  });

  it('info prints JSON with host, store and runtime sections', async () => {
    mkdirSync(path.join(other.root, 'containers', 'c1'), { recursive: true });
    const r = await t.run(['--root', other.root, 'info']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.host).toMatchObject({ os: 'linux', kernel: os.release(), cpus: os.availableParallelism(), memTotal: os.totalmem(), rootless: process.geteuid!() !== 0 });
    const fsType = execFileSync('stat', ['-fc', '%T', '/sys/fs/cgroup'], { encoding: 'utf8' }).trim();
    const expected = fsType === 'cgroup2fs' ? 'v2' : existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? 'hybrid' : 'v1';
    expect(info.host.cgroupVersion).toBe(expected);
    expect(info.store).toEqual({ root: other.root, snapshotter: 'overlay', imageCount: 1, containerCount: 1 });
    expect(info.runtime.builtin.seccompArchitectures).toContain('SCMP_ARCH_X86_64');
    expect(existsSync(info.runtime.builtin.helper)).toBe(true);
    expect(info.runtime.builtin.helper).toMatch(/\/dist\/run-helper$/);
    expect(existsSync(info.runtime.builtin.copyHelper)).toBe(true);
    const runc = execFileSync('sh', ['-c', 'command -v runc || true'], { encoding: 'utf8' }).trim();
    expect(info.runtime.ociRuntimes.runc ?? '').toBe(runc);
    // No containers directory: no containerCount.
    expect(JSON.parse((await t.run(['info'])).stdout).store).toEqual({ root: t.root, snapshotter: 'overlay', imageCount: 0 });
  });

  it('info --format looks fields up like a Go template; json is the default; a missing field is a usage error', async () => {
    const r = await t.run(['info', '--format', '{{.host.arch}}/{{ .store.imageCount }} {{json .store.snapshotter}}']);
    expect(r.stdout).toBe(`${process.arch === 'x64' ? 'amd64' : process.arch}/0 "overlay"\n`);
    expect(JSON.parse((await t.run(['info', '--format', 'json'])).stdout).store.root).toBe(t.root);
    expect(JSON.parse((await t.run(['info', '--format', '{{.store}}'])).stdout).snapshotter).toBe('overlay');
    const bad = await t.run(['info', '--format', '{{.host.nope}}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('Error: --format {{.host.nope}}: no field .host.nope in tsbuild info (see: tsbuild info --help)\n');
  });
});
