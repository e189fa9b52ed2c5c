import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getXattr, major, minor } from '@tsbuild/linux';
import { tarOf } from './helpers.js';

const NOBODY = 65534;
const dist = join(import.meta.dirname, '../dist/index.js');
let tmp: string;

beforeAll(async () => {
  // The child runs the built package (npm test builds first). Not rebuilt here: the metadata
  // test in overlay-snapshotter.test.ts runs tsc -b too, and two builds racing on dist/ could
  // hand a child a half-written file.
  for (const f of ['apply', 'tar-parser', 'whiteout', 'decompress']) {
    const built = (await stat(join(import.meta.dirname, '../dist', `${f}.js`))).mtimeMs;
    if ((await stat(join(import.meta.dirname, '../src', `${f}.ts`))).mtimeMs > built) throw new Error(`dist/${f}.js is older than src/${f}.ts: run npx tsc -b packages/snapshotter`);
  }
  tmp = await mkdtemp(join(tmpdir(), 'tsbuild-unpriv-'));
  await chmod(tmp, 0o755); // nobody must reach its own directory inside
  await mkdir(join(tmp, 'layers'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Applies `layer` into `dir` in a child node process running as nobody:nogroup with no groups. */
async function applyAsNobody(layer: Buffer, dir: string): Promise<{ ok: boolean; diffID?: string; name?: string; message?: string; uid: number }> {
  const file = join(tmp, 'layers', `layer-${Math.random().toString(36).slice(2)}.tar`);
  await writeFile(file, layer);
  await chmod(file, 0o644);
  const script = `
    const { apply } = await import(${JSON.stringify(dist)});
    const { createReadStream } = await import('node:fs');
    try {
      const r = await apply(createReadStream(process.argv[1]), process.argv[2]);
      console.log(JSON.stringify({ ok: true, diffID: r.diffID, uid: process.getuid() }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, name: e.constructor.name, message: e.message, uid: process.getuid() }));
    }`;
  const r = spawnSync('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', process.execPath, '--input-type=module', '-e', script, file, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { ok: boolean; uid: number };
}

describe('apply as an unprivileged user (setpriv --reuid 65534)', () => {
  it('refuses a device node, naming the entry, and changes nothing outside the directory', async () => {
    const dir = join(tmp, 'dev-target');
    const outside = join(tmp, 'outside');
    await mkdir(dir);
    await chown(dir, NOBODY, NOBODY);
    await mkdir(outside);
    await writeFile(join(outside, 'keep'), 'keep');
    await chown(outside, NOBODY, NOBODY); // writable by the child: only apply's checks keep it out
    const before = await readdir(tmp);
    const layer = tarOf([
      { name: 'etc/', type: 'dir', mode: 0o755 },
      { name: 'etc/hostname', body: 'box' },
      { name: 'dev/', type: 'dir', mode: 0o755 },
      { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'after', body: 'never written' },
    ]);
    const r = await applyAsNobody(layer, dir);
    expect(r.uid).toBe(NOBODY);
    expect(r).toMatchObject({ ok: false, name: 'InvalidArgumentError' });
    expect(r.message).toMatch(/layer entry "dev\/null": cannot create a character device in an unprivileged apply/);
    expect(existsSync(join(dir, 'dev/null'))).toBe(false);
    expect(existsSync(join(dir, 'after'))).toBe(false);
    expect(await readFile(join(outside, 'keep'), 'utf8')).toBe('keep');
    expect(await readdir(outside)).toEqual(['keep']);
    expect((await readdir(tmp)).sort()).toEqual(before.sort());
  });

  it('keeps the caller as owner, applies modes, whiteouts, user xattrs and user.overlay.opaque', async () => {
    const dir = join(tmp, 'ok-target');
    await mkdir(dir);
    await chown(dir, NOBODY, NOBODY);
    const layer = tarOf([
      { name: 'bin/', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
      { name: 'bin/tool', body: '#!/bin/sh\n', mode: 0o4755, uid: 0, gid: 0, xattrs: new Map([['user.note', Buffer.from('kept')], ['trusted.secret', Buffer.from('dropped')]]) },
      { name: 'home/', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
      { name: 'home/.wh..wh..opq', mode: 0 },
      { name: '.wh.gone', mode: 0 },
      { name: 'pipe', type: 'fifo', mode: 0o600, uid: 5, gid: 5 },
    ]);
    const r = await applyAsNobody(layer, dir);
    expect(r).toMatchObject({ ok: true, uid: NOBODY });
    const tool = await lstat(join(dir, 'bin/tool'));
    expect([tool.uid, tool.gid, tool.mode & 0o7777]).toEqual([NOBODY, NOBODY, 0o4755]);
    expect(getXattr(join(dir, 'bin/tool'), 'user.note')?.toString()).toBe('kept');
    expect((await lstat(join(dir, 'home'))).uid).toBe(NOBODY);
    expect(getXattr(join(dir, 'home'), 'user.overlay.opaque')?.toString()).toBe('y');
    const wh = await lstat(join(dir, 'gone'), { bigint: true });
    expect(wh.isCharacterDevice() && major(wh.rdev) === 0 && minor(wh.rdev) === 0).toBe(true);
    expect((await lstat(join(dir, 'pipe'))).isFIFO()).toBe(true);
    expect((await lstat(join(dir, 'pipe'))).uid).toBe(NOBODY);
  });
});
