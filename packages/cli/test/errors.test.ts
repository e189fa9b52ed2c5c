import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore, mountsUnder } from './harness.js';

/** Everything that must be as it was after a failed build. */
async function expectStoreUnchanged(t: TestStore, imagesBefore: string) {
  expect((await t.run(['images', '--format', 'json'])).stdout).toBe(imagesBefore);
  expect(mountsUnder(t.tmp)).toEqual([]);
  const snaps = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout) as { kind: string }[];
  expect(snaps.filter((s) => s.kind !== 'committed')).toEqual([]);
  expect(await fsp.readdir(path.join(t.root, 'tmp'))).toEqual([]);
  expect((await t.run(['fsck'])).code).toBe(0);
}

describe('build errors give one clear line, a non-zero exit, and leave the store as it was', () => {
  const t = new TestStore();
  let before: string;
  beforeAll(async () => {
    await t.importBusybox();
    before = (await t.run(['images', '--format', 'json'])).stdout;
  });
  afterAll(() => t.cleanup());

  it('a missing Dockerfile names the path', async () => {
    const ctx = await t.context({ 'a.txt': 'a' });
    const r = await t.run(['build', '-t', 'x', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: Dockerfile ${path.join(ctx, 'Dockerfile')}: no such file\n`);
    await expectStoreUnchanged(t, before);
  });

  it('an unknown instruction names Dockerfile:line', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN true\nFROBNICATE now\n' });
    const r = await t.run(['build', '-t', 'x', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: Dockerfile:3:1: unknown instruction: FROBNICATE\n');
    expect(r.stdout).toBe(''); // rejected before any step ran
    await expectStoreUnchanged(t, before);
  });

  it('a missing COPY source names Dockerfile:line and the source', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN echo one > /one\nCOPY nope.txt /dst/\n' });
    const r = await t.run(['build', '-t', 'x', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: Dockerfile:3: COPY source nope.txt: no such file or directory in the build context\n');
    await expectStoreUnchanged(t, before);
  });

  it('a failing RUN names Dockerfile:line and the exit status', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nWORKDIR /w\nRUN echo partial > /w/file && exit 3\n' });
    const r = await t.run(['build', '-t', 'x', ctx]);
    expect(r.code).toBe(1);
    // The step's whole output stays in the build's record, and its state for tsbuild debug: the line says how to reach both.
    expect(r.stderr).toMatch(/^Error: Dockerfile:3: RUN echo partial > \/w\/file && exit 3 exited with status 3; full output: tsbuild logs [0-9a-f]{12} --step 3 \(tsbuild debug last to enter the failed step\)\n$/);
    await expectStoreUnchanged(t, before);
  });

  it('a FROM of an unknown image says so', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM nosuchimage:1\n' });
    const r = await t.run(['build', '--pull=never', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: Dockerfile:1: FROM nosuchimage:1: image not known in the local store (and --pull=never)\n');
    // with the default --pull=missing it tries the registry (here none answers) and says so on one line
    const pulled = await t.run(['build', '--tls-verify=false', await t.context({ Dockerfile: 'FROM 127.0.0.1:9/nosuchimage:1\n' })]);
    expect(pulled.code).toBe(1);
    expect(pulled.stderr).toMatch(/^Error: Dockerfile:1: FROM 127\.0\.0\.1:9\/nosuchimage:1: not in the local store, and pulling it failed: .+\n$/);
    await expectStoreUnchanged(t, before);
  });

  it('a missing context directory is an error, not a crash', async () => {
    const r = await t.run(['build', path.join(t.tmp, 'nowhere')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(path.join(t.tmp, 'nowhere'));
  });
});

describe('usage errors exit 2, --help exits 0', () => {
  const t = new TestStore();
  afterAll(() => t.cleanup());

  it('an unknown flag is a usage error', async () => {
    const r = await t.run(['build', '--no-such-flag', '.']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Nonexistent flag: --no-such-flag/);
  });

  it('a missing argument is a usage error', async () => {
    const r = await t.run(['inspect']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Missing 1 required arg/);
  });

  it.each(['build', 'images', 'inspect', 'tag', 'rmi', 'prune', 'fsck', 'import', 'save', 'load', 'snapshots'])('%s --help', async (cmd) => {
    const r = await t.run([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/USAGE/);
    expect(r.stdout).toContain(`tsbuild ${cmd}`);
  });

  it('--help lists every command with the summary its class gives', async () => {
    const r = await t.run(['--help']);
    expect(r.code).toBe(0);
    const { commandIds } = await import('../src/main.js');
    for (const id of commandIds) {
      const { default: c } = (await import(/* @vite-ignore */ new URL(`../src/commands/${id}.ts`, import.meta.url).href)) as { default: { summary?: string } };
      // The summary's first words (long ones wrap onto the next line).
      expect(r.stdout, id).toMatch(new RegExp(`\\n  ${id} +${(c.summary ?? '').split(' ').slice(0, 3).join(' ').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    }
  });

  it('an unknown image is exit 1 with one line', async () => {
    const r = await t.run(['inspect', 'nothere']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: image not known: nothere\n');
  });
});

/** stderr is exactly one line (what a user sees for any error). */
function expectOneLine(stderr: string): void {
  expect(stderr).toMatch(/^Error: [^\n]+\n$/);
}

describe('every error is one line, exit 1 (issue 14)', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it.each([
    ['UPPER/case', 'repository name must be lowercase'],
    ['Myorg/app:1', 'repository name must be lowercase'],
    ['127.0.0.1:99999/x', 'port 99999 of registry host "127.0.0.1:99999" is not in 1..65535'],
  ])('tag busybox %s is refused, naming the reference and what is wrong', async (target, why) => {
    const r = await t.run(['tag', 'busybox', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: invalid reference "${target}": ${why}\n`);
    expect((await t.run(['images', '--format', 'json'])).stdout).not.toContain(target.split('/')[0]);
  });

  it('pull of a reference with a port out of range is one line, not a stack trace', async () => {
    const r = await t.run(['pull', '--tls-verify=false', '127.0.0.1:99999/x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: invalid reference "127.0.0.1:99999/x": port 99999 of registry host "127.0.0.1:99999" is not in 1..65535\n');
  });

  it.each(['save', 'export'])('%s -o into a missing directory names the path', async (cmd) => {
    const out = path.join(t.tmp, 'no/such/dir/x.tar');
    const r = await t.run([cmd, 'busybox', '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: cannot write ${out}: no such directory\n`);
  });

  it.each(['save', 'export'])('%s -o onto a directory names it and leaves no temp file', async (cmd) => {
    const parent = await fsp.mkdtemp(path.join(t.tmp, `${cmd}-`));
    const out = path.join(parent, 'taken');
    await fsp.mkdir(out);
    const r = await t.run([cmd, 'busybox', '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: cannot write ${out}: it is a directory\n`);
    expect(await fsp.readdir(parent)).toEqual(['taken']);
  });

  it('an error no command expected (a bug) is one line with its name; TSBUILD_DEBUG=1 adds the stack', async () => {
    // A preload that throws from a timer while `images` runs: an exception nothing catches.
    const preload = path.join(t.tmp, 'bug.cjs');
    await fsp.writeFile(preload, "setTimeout(() => { const e = new TypeError('boom'); e.code = 'ERR_TEST'; throw e; }, 0);\n");
    const env = { NODE_OPTIONS: `--require ${preload}` };
    const r = await t.run(['images'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: internal error: TypeError [ERR_TEST]: boom (set TSBUILD_DEBUG=1 for a stack trace)\n');
    const debug = await t.run(['images'], { env: { ...env, TSBUILD_DEBUG: '1' } });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^Error: internal error: TypeError: boom\n\s+at .*bug\.cjs/);
  });

  it('a promise nothing awaited that fails is one line too', async () => {
    const preload = path.join(t.tmp, 'reject.cjs');
    await fsp.writeFile(preload, "Promise.reject(new RangeError('lost'));\n");
    const r = await t.run(['images'], { env: { NODE_OPTIONS: `--require ${preload}` } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: internal error: RangeError: lost (set TSBUILD_DEBUG=1 for a stack trace)\n');
  });

  it('usage errors still exit 2 in one line', async () => {
    const r = await t.run(['tag', 'busybox']);
    expect(r.code).toBe(2);
    expectOneLine(r.stderr);
    expect(r.stderr).toContain('Missing 1 required arg');
  });

  it('import --timestamp beyond the span of a date is a usage error naming the flag, not a RangeError', async () => {
    const dir = await t.context({ f: 'x' });
    const r = await t.run(['import', '--timestamp', '99999999999999999', dir, 'late']);
    expect(r.code).toBe(2);
    expectOneLine(r.stderr);
    expect(r.stderr).toContain('--timestamp of at most 8640000000000');
  });
});
