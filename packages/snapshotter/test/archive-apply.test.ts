import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import { apply } from '../src/index.js';
import { describeTree, tarOf } from './helpers.js';

/**
 * apply with `rules: 'archive'`: what ADD does with a local tar, as docker does it (BuildKit's file
 * op → go-archive chrootarchive.Untar, i.e. archive.Unpack chrooted to the destination). Every
 * path resolves inside the destination; nothing is ever written outside it.
 */

let tmp: string;
let dir: string;
let outside: string;
let check: () => Promise<void>;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'tsbuild-archive-apply-'));
  outside = join(tmp, 'outside');
  dir = join(tmp, 'dir');
  await mkdir(join(outside, 'sub'), { recursive: true });
  await mkdir(dir);
  await writeFile(join(outside, 'secret'), 'secret');
  const before = await describeTree(outside);
  check = async () => {
    expect(await describeTree(outside)).toEqual(before);
    expect((await readdir(tmp)).sort()).toEqual(['dir', 'outside']);
  };
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const run = (list: Parameters<typeof tarOf>[0]) => apply(Readable.from([tarOf(list)]), dir, { rules: 'archive' });

describe("apply with rules: 'archive' (ADD of a local tar)", () => {
  it('skips entries naming the destination itself (empty, ".", "./", "/"), whatever their type, and leaves its mode alone', async () => {
    const mode = (await stat(dir)).mode;
    await run([
      { name: '', body: 'nameless' },
      { name: '.', type: 'dir', mode: 0o700 },
      { name: './', type: 'dir', mode: 0o700, uid: 1234 },
      { name: '/', type: 'dir', mode: 0o700 },
      { name: './a', body: 'a' },
    ]);
    expect(await readdir(dir)).toEqual(['a']);
    expect((await stat(dir)).mode).toBe(mode);
    expect((await stat(dir)).uid).toBe(0);
    // the layer rules still refuse a nameless file
    await expect(apply(Readable.from([tarOf([{ name: '', body: 'x' }])]), join(tmp, 'dir'))).rejects.toThrow(/root can only be a directory/);
  });

  it('writes entries under a symlink the archive made through it, inside the destination', async () => {
    await run([
      { name: 'real/', type: 'dir', mode: 0o755 },
      { name: 'rel', type: 'symlink', linkname: 'real' },
      { name: 'abs', type: 'symlink', linkname: '/real' },
      { name: 'chain', type: 'symlink', linkname: 'abs/../rel' },
      { name: 'rel/a', body: 'a' },
      { name: 'abs/b', body: 'b' },
      { name: 'chain/c', body: 'c' },
      { name: 'rel/deep/d', body: 'd' },
    ]);
    expect((await readdir(join(dir, 'real'))).sort()).toEqual(['a', 'b', 'c', 'deep']);
    expect(await readFile(join(dir, 'real/deep/d'), 'utf8')).toBe('d');
    expect((await lstat(join(dir, 'rel'))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(dir, 'abs'))).toBe('/real');
  });

  it('resolves links that point out of the destination inside it, as the chroot docker unpacks in does', async () => {
    await symlink(outside, join(dir, 'planted')); // as if the destination already held such a link
    await run([
      { name: 'up', type: 'symlink', linkname: '../../../../../../..' + outside },
      { name: 'host', type: 'symlink', linkname: outside },
      { name: 'dotdot', type: 'symlink', linkname: '..' },
      { name: 'up/secret', body: 'pwned1' },
      { name: 'host/secret', body: 'pwned2' },
      { name: 'dotdot/outside/sub/x', body: 'pwned3' },
      { name: 'planted/sub/y', body: 'pwned4' },
    ]);
    await check();
    // `..` stops at the destination root, an absolute target starts again there
    expect(await readFile(join(dir, outside, 'secret'), 'utf8')).toBe('pwned2');
    expect(await readFile(join(dir, 'outside/sub/x'), 'utf8')).toBe('pwned3');
    expect(await readFile(join(dir, outside, 'sub/y'), 'utf8')).toBe('pwned4');
    // the links themselves are kept as the archive wrote them
    expect(await readlink(join(dir, 'host'))).toBe(outside);
  });

  it("takes '..' components and absolute names inside the destination", async () => {
    await run([
      { name: '../outside/secret', body: 'one' },
      { name: 'a/../../../two', body: 'two' },
      { name: '/etc/three', body: 'three' },
      { name: '//x/./y/../z', body: 'four' },
    ]);
    await check();
    expect(await readFile(join(dir, 'outside/secret'), 'utf8')).toBe('one');
    expect(await readFile(join(dir, 'two'), 'utf8')).toBe('two');
    expect(await readFile(join(dir, 'etc/three'), 'utf8')).toBe('three');
    expect(await readFile(join(dir, 'x/z'), 'utf8')).toBe('four');
    expect(existsSync(join(dir, 'a'))).toBe(false); // cleaned as a name first (filepath.Clean), so no `a` is made
  });

  it('links hardlinks whose target sits under a symlink, and never to a file outside', async () => {
    await run([
      { name: 'real/f', body: 'f' },
      { name: 'l', type: 'symlink', linkname: '/real' },
      { name: 'h', type: 'link', linkname: 'l/f' },
      { name: 'up', type: 'symlink', linkname: '../..' + outside },
    ]);
    expect((await stat(join(dir, 'h'))).ino).toBe((await stat(join(dir, 'real/f'))).ino);
    await expect(run([{ name: 'h2', type: 'link', linkname: 'up/secret' }])).rejects.toThrow(/"h2": hardlink target "up\/secret": "tmp" does not exist/);
    await expect(run([{ name: 'h3', type: 'link', linkname: `../../..${outside}/secret` }])).rejects.toThrow(/does not exist/);
    await expect(run([{ name: 'h4', type: 'link', linkname: './' }])).rejects.toThrow(/"h4".*is a directory/);
    await expect(run([{ name: 'h5', type: 'link', linkname: 'real' }])).rejects.toBeInstanceOf(InvalidArgumentError);
    await check();
  });

  it('lets the last of duplicate entries win; a directory replaces a file and a file a directory', async () => {
    await run([
      { name: 'dup', body: 'first' },
      { name: 'dup', body: 'second' },
      { name: 'f2d', body: 'file' },
      { name: 'f2d/', type: 'dir', mode: 0o750 },
      { name: 'f2d/in', body: 'in' },
      { name: 'd2f/', type: 'dir', mode: 0o755 },
      { name: 'd2f/in', body: 'in' },
      { name: 'd2f', body: 'file now' },
      { name: 'd/', type: 'dir', mode: 0o700 },
      { name: 'd/keep', body: 'k' },
      { name: 'd/', type: 'dir', mode: 0o755 },
      { name: 'l2d', type: 'symlink', linkname: outside },
      { name: 'l2d/', type: 'dir', mode: 0o755 },
      { name: 'l2d/x', body: 'x' },
    ]);
    expect(await readFile(join(dir, 'dup'), 'utf8')).toBe('second');
    expect((await stat(join(dir, 'f2d'))).mode & 0o7777).toBe(0o750);
    expect(await readFile(join(dir, 'f2d/in'), 'utf8')).toBe('in');
    expect(await readFile(join(dir, 'd2f'), 'utf8')).toBe('file now');
    expect(await readFile(join(dir, 'd/keep'), 'utf8')).toBe('k'); // directories merge
    expect((await stat(join(dir, 'd'))).mode & 0o7777).toBe(0o755);
    expect((await lstat(join(dir, 'l2d'))).isDirectory()).toBe(true); // a directory entry replaces a symlink
    await check();
  });

  it('keeps whiteout names as ordinary files (docker unpacks an ADD tar without a whiteout converter)', async () => {
    await run([
      { name: 'victim', body: 'victim' },
      { name: '.wh.victim', body: 'whiteout' },
      { name: 'd/.wh..wh..opq', body: '' },
    ]);
    expect(await readFile(join(dir, 'victim'), 'utf8')).toBe('victim');
    expect(await readFile(join(dir, '.wh.victim'), 'utf8')).toBe('whiteout');
    expect((await lstat(join(dir, 'd/.wh..wh..opq'))).isFile()).toBe(true);
  });

  it('keeps the owners, modes and times recorded in the archive; implied directories are 0755 root', async () => {
    await run([
      { name: 'o/f', body: 'f', uid: 1234, gid: 5678, mode: 0o4750, mtime: 1_600_000_000 },
      { name: 'o/s', type: 'symlink', linkname: 'f', uid: 42, gid: 43 },
      { name: 'p/', type: 'dir', uid: 7, gid: 8, mode: 0o711 },
    ]);
    const f = await lstat(join(dir, 'o/f'));
    expect([f.uid, f.gid, f.mode & 0o7777, f.mtimeMs]).toEqual([1234, 5678, 0o4750, 1_600_000_000_000]);
    const s = await lstat(join(dir, 'o/s'));
    expect([s.uid, s.gid]).toEqual([42, 43]);
    const p = await lstat(join(dir, 'p'));
    expect([p.uid, p.gid, p.mode & 0o7777]).toEqual([7, 8, 0o711]);
    const o = await lstat(join(dir, 'o'));
    expect([o.uid, o.gid, o.mode & 0o7777]).toEqual([0, 0, 0o755]);
  });

  it('fails on a symlink loop on the way with one line naming the entry', async () => {
    await expect(run([{ name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: 'a' }, { name: 'a/x', body: 'x' }])).rejects.toThrow(
      /archive entry "a\/x": too many levels of symbolic links/,
    );
    await check();
  });
});
