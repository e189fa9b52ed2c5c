import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractArchive } from '@tsbuild/container';
import { type Harness, openHarness } from './conformance/harness.js';

/**
 * ADD of a local tar unpacks as docker does (issue 15, point 5). Docker's builder (BuildKit's
 * file op, solver/llbsolver/file/unpack.go) runs go-archive's chrootarchive.Untar: archive.Unpack
 * chrooted to the destination directory, owners kept (Lchown unless --chown), no whiteout
 * converter. The archives here are written entry by entry with tar-stream, since tar(1) will not
 * write most of these names.
 */

type Entry = tar.Headers & { body?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => pack.on('end', resolve));
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry({ mode: h.type === 'directory' ? 0o755 : 0o644, mtime: new Date(1_700_000_000_000), ...h }, body ?? '', (e) => (e ? reject(e) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

let h: Harness;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-add-archive-fidelity-'));
beforeAll(async () => {
  h = await openHarness('add-archive-fidelity');
}, 120_000);
afterAll(async () => {
  await h?.close();
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('extractArchive (the staging step of ADD)', () => {
  it('keeps the uid/gid and mode recorded in the archive, and skips nameless and "./" entries', async () => {
    const file = path.join(tmp, 'owners.tar');
    await fsp.writeFile(
      file,
      await tarOf([
        { name: './', type: 'directory', mode: 0o700, uid: 99 },
        { name: '', body: 'nameless' },
        { name: 'd/', type: 'directory', mode: 0o750, uid: 1234, gid: 5678 },
        { name: 'd/f', body: 'f', mode: 0o4755, uid: 1234, gid: 5678 },
        { name: 'd/l', type: 'symlink', linkname: 'f', uid: 42, gid: 43 },
      ]),
    );
    const out = path.join(tmp, 'owners');
    await extractArchive(file, out);
    expect(await fsp.readdir(out)).toEqual(['d']);
    const root = await fsp.stat(out);
    expect([root.uid, root.mode & 0o7777]).toEqual([0, 0o755]);
    const ids = async (p: string) => {
      const st = await fsp.lstat(path.join(out, p));
      return [st.uid, st.gid, st.mode & 0o7777];
    };
    expect(await ids('d')).toEqual([1234, 5678, 0o750]);
    expect(await ids('d/f')).toEqual([1234, 5678, 0o4755]);
    expect((await ids('d/l')).slice(0, 2)).toEqual([42, 43]);
  });
});

describe('ADD of a local tar, built and unpacked with umoci', () => {
  it('writes through the archive\'s own symlinks inside the destination, takes ".." and absolute names inside, and skips the root entry', async () => {
    const archive = await tarOf([
      { name: '', body: 'nameless' },
      { name: './', type: 'directory', mode: 0o700 },
      { name: 'real/', type: 'directory' },
      { name: 'abs', type: 'symlink', linkname: '/real' },
      { name: 'rel', type: 'symlink', linkname: 'real' },
      { name: 'up', type: 'symlink', linkname: '../../../../etc' },
      { name: 'abs/a', body: 'a' },
      { name: 'rel/sub/b', body: 'b' },
      { name: 'up/c', body: 'c' },
      { name: 'hl', type: 'link', linkname: 'abs/a' },
      { name: '../../dotdot', body: 'dotdot' },
      { name: '/absolute/d', body: 'd' },
      { name: 'dup', body: 'first' },
      { name: 'dup', body: 'second' },
      { name: 'f2d', body: 'file' },
      { name: 'f2d/', type: 'directory' },
      { name: 'f2d/in', body: 'in' },
      { name: 'd2f/', type: 'directory' },
      { name: 'd2f/in', body: 'in' },
      { name: 'd2f', body: 'file now' },
    ]);
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nADD x.tar /dst/\n', 'x.tar': archive });
    expect((await r.ls('dst/real')).sort()).toEqual(['a', 'sub']);
    expect(await r.read('dst/real/a')).toBe('a');
    expect(await r.read('dst/real/sub/b')).toBe('b');
    // `up` climbs out of /dst: like the chroot docker unpacks in, `..` stops at the destination
    expect(await r.read('dst/etc/c')).toBe('c');
    expect(await r.exists('etc/c')).toBe(false);
    expect(await r.read('dst/hl')).toBe('a');
    expect(await r.read('dst/dotdot')).toBe('dotdot');
    expect(await r.exists('dotdot')).toBe(false);
    expect(await r.read('dst/absolute/d')).toBe('d');
    expect(await r.read('dst/dup')).toBe('second');
    expect(await r.read('dst/f2d/in')).toBe('in');
    expect(await r.read('dst/d2f')).toBe('file now');
    expect((await r.lstat('dst/abs')).isSymbolicLink()).toBe(true);
    expect((await r.lstat('dst')).mode & 0o7777).toBe(0o755); // the archive's "./" 0700 is not applied
  });
});
