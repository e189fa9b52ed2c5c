import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, HELLO, IMAGE_ID_LINE, REPO, type Result, TestStore, mountsUnder } from './harness.js';

/** TestStore.run, for input the command may stop reading early: EPIPE on our end is expected then. */
function runWithInput(t: TestStore, args: string[], input: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { cwd: REPO, env: { ...process.env, TSBUILD_ROOT: t.root }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    child.on('error', reject);
    child.stdin.end(input);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe('tsbuild build of the bundled example', () => {
  const t = new TestStore();
  let out: Awaited<ReturnType<TestStore['run']>>;
  beforeAll(async () => {
    await t.importBusybox();
    out = await t.run(['build', '-t', 'hello', HELLO]);
  });
  afterAll(() => t.cleanup());

  it('succeeds, prints each step and ends with the image ID', () => {
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).toBe('STEP 1/8: FROM busybox');
    expect(lines).toContain('STEP 6/8: RUN chmod 0755 /usr/local/bin/greet     && greet > /srv/www/greeting.txt     && echo "built on $(uname -s) as $(id -u), pid $$" >> /srv/www/greeting.txt');
    expect(lines.at(-1)).toMatch(IMAGE_ID_LINE);
  });

  it('stores an OCI image whose config carries ENV, WORKDIR, EXPOSE, CMD, history and diff_ids', async () => {
    const inspect = JSON.parse((await t.run(['inspect', 'hello'])).stdout);
    expect(inspect.Id).toBe(`sha256:${out.stdout.trim().split('\n').at(-1)}`);
    expect(inspect.Names).toEqual(['docker.io/library/hello:latest']);
    expect(inspect.Manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const c = inspect.Config;
    expect(c.config.Env).toEqual(expect.arrayContaining(['GREETING=Hello from tsbuild', 'PORT=8080']));
    expect(c.config.WorkingDir).toBe('/srv/www');
    expect(c.config.ExposedPorts).toEqual({ '8080/tcp': {} });
    expect(c.config.Cmd).toEqual(['sh', '-c', 'httpd -f -p $PORT -h /srv/www']);
    // base layer + WORKDIR (creates /srv/www) + 2 COPY + RUN
    expect(c.rootfs.diff_ids).toHaveLength(5);
    expect(inspect.Manifest.layers).toHaveLength(5);
    // the imported base and the build's own layers are stored uncompressed, as buildah stores them
    expect(inspect.Manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(Array(5).fill('application/vnd.oci.image.layer.v1.tar'));
    expect(c.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer)).toHaveLength(5);
    expect(c.history.map((h: { created_by: string }) => h.created_by)).toEqual(expect.arrayContaining(['/bin/sh -c #(nop) ENV GREETING=Hello from tsbuild PORT=8080']));
  });

  it('ran RUN as PID 1 of its own PID namespace on the image filesystem, and skopeo + umoci read the result', async () => {
    const archive = path.join(t.tmp, 'hello.tar');
    expect((await t.run(['save', 'hello', '-o', archive, '--format', 'oci-archive'])).code).toBe(0);
    const oci = path.join(t.tmp, 'oci');
    execFileSync('skopeo', ['copy', '-q', `oci-archive:${archive}`, `oci:${oci}:hello`]);
    const bundle = path.join(t.tmp, 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${oci}:hello`, bundle]);
    const greeting = readFileSync(path.join(bundle, 'rootfs/srv/www/greeting.txt'), 'utf8');
    expect(greeting).toBe('Hello from tsbuild (in /srv/www)\nbuilt on Linux as 0, pid 1\n');
    expect(readFileSync(path.join(bundle, 'rootfs/srv/www/index.html'), 'utf8')).toContain('Hello from an image built by tsbuild.');
    const greet = execFileSync('stat', ['-c', '%a %u:%g', path.join(bundle, 'rootfs/usr/local/bin/greet')], { encoding: 'utf8' });
    expect(greet.trim()).toBe('755 0:0');
  });

  it('leaves no mount and no active snapshot behind', async () => {
    expect(mountsUnder(t.tmp)).toEqual([]);
    const snaps = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout) as { kind: string }[];
    expect(snaps.filter((s) => s.kind !== 'committed')).toEqual([]);
    expect(snaps).toHaveLength(5);
  });

  it('lists the image, with JSON for scripts', async () => {
    const table = (await t.run(['images'])).stdout;
    expect(table.split('\n')[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(table).toMatch(/\nhello\s+latest\s+[0-9a-f]{12}\s+/);
    const json = JSON.parse((await t.run(['images', '--format', 'json'])).stdout) as { repository: string; size: number }[];
    expect(json.map((i) => i.repository).sort()).toEqual(['busybox', 'hello']);
    expect(json.every((i) => i.size > 0)).toBe(true);
    // buildah's and podman's -q (each ID once, short unless --no-trunc) and -n.
    const ids = json.map((i) => (i as unknown as { id: string }).id);
    expect((await t.run(['images', '-q'])).stdout.trim().split('\n').sort()).toEqual([...new Set(ids.map((i) => i.slice(7, 19)))].sort());
    expect((await t.run(['images', '-q', '--no-trunc'])).stdout.trim().split('\n').sort()).toEqual([...new Set(ids)].sort());
    expect((await t.run(['images', '-n'])).stdout).not.toContain('REPOSITORY');
  });

  it('--progress=tty styles step lines; plain output (not a terminal) has no escape codes', async () => {
    const tty = await t.run(['build', '--progress=tty', '-t', 'hello', HELLO]);
    expect(tty.stdout).toContain('\u001b[1mSTEP 1/8:\u001b[22m FROM busybox');
    expect(tty.stdout).toContain('\u001b[2m--> Using cache\u001b[22m');
    expect(out.stdout).not.toContain('\u001b[');
  });

  it('passes fsck', async () => {
    const r = await t.run(['fsck']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 problem\(s\)/);
  });
});

/** Issue 14: whatever a Dockerfile (or a flag) says, the user gets one line and a status, never a stack trace. */
describe('tsbuild build of hostile input: one line, the right status', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  async function buildOf(dockerfile: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}) {
    const ctx = await t.context({ Dockerfile: dockerfile });
    return t.run(['build', '-q', ...flags, ctx], { env });
  }

  it.each([
    ['ENV A=$A$A 28 times', `FROM busybox\nENV A=x\n${'ENV A=$A$A\n'.repeat(28)}`, 'Dockerfile:22: variable expansion is too large: more than 1 MiB in one instruction'],
    ['${a:-${a:-…}} nested 40,000 deep', `FROM busybox\nENV B=${'${a:-'.repeat(40_000)}x${'}'.repeat(40_000)}\n`, 'Dockerfile:2: variable substitutions nested more than 32 deep'],
    ['FROM ${NOPE}', 'FROM busybox\nFROM ${NOPE}\n', 'Dockerfile:2: FROM ${NOPE}: the image name is empty'],
    ['a quote in the reference', 'FROM busybox":latest\n', 'Dockerfile:1: FROM busybox":latest: unexpected end of statement while looking for matching double-quote'],
    ['an unknown modifier in FROM', 'FROM busybox:${TAG!x}\n', 'Dockerfile:1: FROM busybox:${TAG!x}: unsupported modifier (!) in substitution of TAG'],
    ['${TAG:?} with TAG unset', 'FROM busybox:${TAG:?}\n', 'Dockerfile:1:14: TAG: is not allowed to be unset (in ${TAG:?})'],
    ['an instruction over 256 KiB', `FROM busybox\nRUN echo ${'a '.repeat(140_000)}\n`, 'Dockerfile:2:1: RUN: the instruction is longer than 256 KiB'],
  ])('%s', async (_name, dockerfile, line) => {
    const r = await buildOf(dockerfile);
    // Build checks may warn first (FROM ${NOPE}: UndefinedArgInFrom); the error is one line.
    expect(r.stderr.replace(/^Warning: .*\n/gm, '')).toBe(`Error: ${line}\n`);
    expect(r.code).toBe(1);
  });

  it('--timestamp out of the range of a date is a usage error naming the flag', async () => {
    const r = await buildOf('FROM busybox\nRUN true\n', ['--timestamp=99999999999999999']);
    expect(r.stderr).toBe('Error: Expected an integer for --timestamp of at most 8640000000000 but received: 99999999999999999 (see: tsbuild build --help)\n');
    expect(r.code).toBe(2);
  });

  it('SOURCE_DATE_EPOCH out of range names the variable', async () => {
    const r = await buildOf('FROM busybox\nRUN true\n', [], { SOURCE_DATE_EPOCH: '99999999999999999' });
    expect(r.stderr).toBe('Error: SOURCE_DATE_EPOCH=99999999999999999: want whole seconds between -8640000000000 and 8640000000000\n');
    expect(r.code).toBe(1);
  });

  it('a 10 GB Dockerfile is refused after its first MiB, from a file or from stdin', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN true\n' });
    await fsp.truncate(path.join(ctx, 'Dockerfile'), 10 * 2 ** 30);
    const r = await t.run(['build', '-q', ctx]);
    expect(r.stderr).toBe('Error: Dockerfile:3: the Dockerfile is larger than 1 MiB, the most tsbuild reads\n');
    expect(r.code).toBe(1);
    const stdin = await runWithInput(t, ['build', '-q', '-f', '-', ctx], 'FROM busybox\n' + 'RUN true\n'.repeat(200_000));
    expect(stdin.stderr).toBe(`Error: Dockerfile:${Math.floor((2 ** 20 - 13) / 9) + 2}: the Dockerfile is larger than 1 MiB, the most tsbuild reads\n`);
    expect(stdin.code).toBe(1);
  });

  it('build - whose tar holds a Dockerfile that is a symlink to a host file reads nothing of the host', async () => {
    const canary = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-canary-'));
    const ctx = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-ctx-'));
    try {
      await fsp.writeFile(path.join(canary, 'secret'), 'CANARY-LINE-ONE\n');
      await fsp.symlink(path.join(canary, 'secret'), path.join(ctx, 'Dockerfile'));
      const tar = execFileSync('tar', ['-C', ctx, '-cf', '-', 'Dockerfile']);
      const r = await t.run(['build', '-q', '-'], { input: tar.toString('latin1') });
      expect(r.stderr).not.toContain('CANARY');
      expect(r.stderr).toMatch(/^Error: Dockerfile .*\/Dockerfile: no such file\n$/);
      expect(r.code).toBe(1);
    } finally {
      await fsp.rm(canary, { recursive: true, force: true });
      await fsp.rm(ctx, { recursive: true, force: true });
    }
  });
});

describe('tsbuild build on a full disk', () => {
  const t = new TestStore();
  let mnt: string;
  beforeAll(() => {
    // The store on a 2 MiB tmpfs: a 2.5 MB file does not fit as the layer a COPY writes straight
    // from its sources (no snapshot of it is written first, docs/DESIGN.md).
    mnt = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  });
  afterAll(async () => {
    execFileSync('umount', [mnt]);
    await fsp.rm(mnt, { recursive: true, force: true });
    await t.cleanup();
  });

  it('ENOSPC while a layer is written: one line with Dockerfile:LINE and the step, exit 1, and a consistent store', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM scratch\nCOPY big /big\n' });
    await fsp.writeFile(path.join(ctx, 'big'), Buffer.alloc(2_500_000, 7));
    const root = ['--root', path.join(mnt, 'store')];
    const r = await t.run(['build', '-q', ...root, ctx]);
    expect(r.stderr).toBe('Error: Dockerfile:2: COPY big /big: writing the layer of step 2: ENOSPC: no space left on device, write\n');
    expect(r.code).toBe(1);
    const snaps = JSON.parse((await t.run(['snapshots', '--format', 'json', ...root])).stdout) as { kind: string }[];
    expect(snaps.filter((s) => s.kind !== 'committed')).toEqual([]);
    const fsck = await t.run(['fsck', ...root]);
    expect(fsck.stdout).toMatch(/0 problem\(s\)/);
    expect(fsck.code).toBe(0);
    expect(await fsp.readdir(path.join(mnt, 'store', 'tmp'))).toEqual([]);
    expect(mountsUnder(mnt)).toEqual([mnt]);
  });
});
