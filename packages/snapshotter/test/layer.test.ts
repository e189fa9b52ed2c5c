import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getXattr, major, minor, setXattr } from '@tsbuild/linux';
import { DataLossError, InvalidArgumentError, type Digest } from '@tsbuild/oci';
import { apply, diff, OverlaySnapshotter, tarDirectory, unpack } from '../src/index.js';
import { readTar } from '../src/tar-reader.js';
import { describeTree, mountAll, tarOf } from './helpers.js';

let tmp: string;
let undo: (() => void)[] = [];
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'tsbuild-layer-'));
  undo = [];
});
afterEach(async () => {
  for (const u of undo.reverse()) u();
  await rm(tmp, { recursive: true, force: true });
});

async function bytes(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function entries(tar: Buffer) {
  const out: { name: string; type: string; mode: number; uid: number; gid: number; linkname: string; xattrs: Map<string, Buffer>; devmajor: number; devminor: number }[] = [];
  for await (const e of readTar(Readable.from([tar]))) {
    for await (const _ of e.body) void _;
    out.push({ name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, linkname: e.linkname, xattrs: e.xattrs, devmajor: e.devmajor, devminor: e.devminor });
  }
  return out;
}

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A base snapshot with files to change through an overlay. */
async function base(s: OverlaySnapshotter): Promise<void> {
  await s.prepare('base-k');
  const fs = await s.fsDir('base-k');
  await writeFile(join(fs, 'gone'), 'x');
  await mkdir(join(fs, 'dir/sub'), { recursive: true });
  await writeFile(join(fs, 'dir/old'), 'old');
  await writeFile(join(fs, 'dir/sub/deep'), 'deep');
  await writeFile(join(fs, 'meta'), 'meta');
  await writeFile(join(fs, 'linked'), 'linked');
  await s.commit('base', 'base-k');
}

describe('diff', () => {
  it('turns changes made through a mounted overlay into a layer with whiteouts', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await base(s);
    await s.prepare('work', 'base');
    const m = join(tmp, 'merged');
    await mkdir(m);
    undo.push(mountAll(await s.mounts('work'), m));

    await unlink(join(m, 'gone'));
    await rm(join(m, 'dir'), { recursive: true });
    await mkdir(join(m, 'dir'));
    await writeFile(join(m, 'dir/new'), 'new');
    await link(join(m, 'linked'), join(m, 'hard'));
    await symlink('/etc/target', join(m, 'sym'));
    execFileSync('mkfifo', [join(m, 'fifo')]);
    await writeFile(join(m, 'suid'), '#!/bin/sh\n');
    await chmod(join(m, 'suid'), 0o4755);
    await chown(join(m, 'meta'), 1234, 5678);
    await chmod(join(m, 'meta'), 0o600);
    execFileSync('mknod', [join(m, 'null'), 'c', '1', '3']);

    const tar = await bytes(diff(s, 'work'));
    const list = await entries(tar);
    const byName = new Map(list.map((e) => [e.name, e]));
    expect(list.map((e) => e.name)).toEqual(['dir/', 'dir/.wh..wh..opq', 'dir/new', 'fifo', '.wh.gone', 'hard', 'linked', 'meta', 'null', 'suid', 'sym']);
    expect(byName.get('.wh.gone')).toMatchObject({ type: 'file' });
    expect(byName.get('linked')).toMatchObject({ type: 'link', linkname: 'hard' });
    expect(byName.get('hard')).toMatchObject({ type: 'file' });
    expect(byName.get('sym')).toMatchObject({ type: 'symlink', linkname: '/etc/target' });
    expect(byName.get('fifo')).toMatchObject({ type: 'fifo' });
    expect(byName.get('suid')).toMatchObject({ type: 'file', mode: 0o4755 });
    expect(byName.get('meta')).toMatchObject({ type: 'file', mode: 0o600, uid: 1234, gid: 5678 });
    expect(byName.get('null')).toMatchObject({ type: 'char', devmajor: 1, devminor: 3 });

    // GNU tar reads it the same way.
    const tarFile = join(tmp, 'l.tar');
    await writeFile(tarFile, tar);
    const listing = execFileSync('tar', ['-tvf', tarFile, '--numeric-owner'], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rwsr-xr-x 0\/0 .* suid$/m);
    expect(listing).toMatch(/^-rw------- 1234\/5678 .* meta$/m);
    expect(listing).toMatch(/^hrw-r--r-- .* linked link to hard$/m);
    expect(listing).toMatch(/^lrwxrwxrwx .* sym -> \/etc\/target$/m);
    expect(listing).toMatch(/^prw-r--r-- .* fifo$/m);
    expect(listing).toMatch(/^crw-r--r-- 0\/0 +1,3 .* null$/m);

    // Applying the layer onto the same base rebuilds the same merged tree.
    const want = await describeTree(m);
    await s.prepare('replay', 'base');
    const { diffID } = await apply(Readable.from([tar]), await s.fsDir('replay'));
    expect(diffID).toBe(sha(tar));
    const up = await s.fsDir('replay');
    const wh = await lstat(join(up, 'gone'), { bigint: true });
    expect(wh.isCharacterDevice() && major(wh.rdev) === 0 && minor(wh.rdev) === 0).toBe(true);
    expect(getXattr(join(up, 'dir'), 'trusted.overlay.opaque')?.toString()).toBe('y');
    const m2 = join(tmp, 'merged2');
    await mkdir(m2);
    undo.push(mountAll(await s.mounts('replay'), m2));
    const got = await describeTree(m2);
    const strip = (t: typeof want) => t.filter((n) => n.type !== 'dir').map(({ mtime: _m, ...rest }) => rest);
    expect(strip(got)).toEqual(strip(want));
    expect((await describeTree(m2)).map((n) => n.path)).toEqual(want.map((n) => n.path));
  });

  it('is deterministic: two diffs of the same tree are byte-identical; sourceDateEpoch clamps mtimes', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await base(s);
    await s.prepare('work', 'base');
    const m = join(tmp, 'merged');
    await mkdir(m);
    undo.push(mountAll(await s.mounts('work'), m));
    await unlink(join(m, 'gone'));
    await writeFile(join(m, 'a'), 'a'.repeat(10_000));
    await writeFile(join(m, 'b'), 'b');
    await utimes(join(m, 'b'), 100, 100);
    const one = await bytes(diff(s, 'work'));
    const two = await bytes(diff(s, 'work'));
    expect(one.equals(two)).toBe(true);
    const clamped = await entries(await bytes(diff(s, 'work', { sourceDateEpoch: 1000 })));
    const got: Record<string, number> = {};
    for await (const e of readTar(Readable.from([await bytes(diff(s, 'work', { sourceDateEpoch: 1000 }))]))) {
      for await (const _ of e.body) void _;
      got[e.name] = e.mtime;
    }
    expect(clamped.map((e) => e.name)).toEqual(['a', 'b', '.wh.gone']);
    expect(got).toEqual({ '.wh.gone': 1000, a: 1000, b: 100 });
  });

  it('carries user.* and security.capability xattrs through diff and apply, byte for byte', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await s.prepare('k');
    const fs = await s.fsDir('k');
    await writeFile(join(fs, 'bin'), 'x');
    await chmod(join(fs, 'bin'), 0o755);
    // vfs_cap_data v2: magic 0x02000000 | effective, permitted = cap_setuid (bit 7) | cap_net_bind_service (bit 10)
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    setXattr(join(fs, 'bin'), 'security.capability', cap);
    setXattr(join(fs, 'bin'), 'user.x', 'hello\xff');
    const tar = await bytes(diff(s, 'k'));
    const [e] = await entries(tar);
    expect(e!.xattrs.get('security.capability')).toEqual(cap);
    const out = join(tmp, 'out');
    await mkdir(out);
    await apply(Readable.from([tar]), out);
    expect(getXattr(join(out, 'bin'), 'security.capability')).toEqual(cap);
    expect(getXattr(join(out, 'bin'), 'user.x')).toEqual(Buffer.from('hello\xff'));
  });
});

describe('tarDirectory and apply', () => {
  async function sampleTree(src: string): Promise<void> {
    await mkdir(join(src, 'd/e'), { recursive: true });
    await writeFile(join(src, 'd/file'), Buffer.alloc(70_000, 7));
    await writeFile(join(src, 'empty'), '');
    await link(join(src, 'd/file'), join(src, 'hard'));
    await symlink('d/file', join(src, 'sym'));
    execFileSync('mkfifo', [join(src, 'fifo')]);
    execFileSync('mknod', [join(src, 'blk'), 'b', '7', '200']);
    await writeFile(join(src, 'sgid'), 's');
    await chown(join(src, 'sgid'), 42, 43);
    await chmod(join(src, 'sgid'), 0o2750);
    await chmod(join(src, 'd/e'), 0o1777);
    await writeFile(join(src, 'zero'), 'z');
    await chmod(join(src, 'zero'), 0o000);
    const long = join(src, 'long-'.repeat(30));
    await mkdir(long);
    await writeFile(join(long, 'ünïcødé-'.repeat(20)), 'u');
    await symlink('t'.repeat(150), join(src, 'longlink'));
    await writeFile(join(src, 'bigid'), 'b');
    await chown(join(src, 'bigid'), 3_000_000, 4_000_000);
    setXattr(join(src, 'd'), 'user.dir', 'v');
    await utimes(join(src, 'd/e'), 1_600_000_000.5, 1_500_000_000.25);
  }

  it('round-trips a tree: types, modes, owners, mtimes, link targets, content, xattrs', async () => {
    const src = join(tmp, 'src');
    const out = join(tmp, 'out');
    await mkdir(src);
    await mkdir(out);
    await sampleTree(src);
    const tar = await bytes(tarDirectory(src));
    const { diffID } = await apply(Readable.from([tar]), out);
    expect(diffID).toBe(sha(tar));
    const want = await describeTree(src);
    expect(await describeTree(out)).toEqual(want);
    expect(want.find((n) => n.path === 'd/e')!.mtime).toBe(1_500_000_000);
    expect((await bytes(tarDirectory(out))).equals(tar)).toBe(true);
  });

  it('accepts gzip and zstd layers, returning the diffID of the uncompressed tar', async () => {
    const src = join(tmp, 'src');
    await mkdir(src);
    await sampleTree(src);
    const tar = await bytes(tarDirectory(src));
    const gz = gzipSync(tar);
    const tarFile = join(tmp, 'l.tar');
    await writeFile(tarFile, tar);
    execFileSync('zstd', ['-q', '-f', tarFile, '-o', `${tarFile}.zst`]);
    for (const [kind, stream] of [['gzip', Readable.from([gz])], ['zstd', createReadStream(`${tarFile}.zst`)]] as const) {
      const out = join(tmp, `out-${kind}`);
      await mkdir(out);
      expect((await apply(stream, out)).diffID).toBe(sha(tar));
      expect(await describeTree(out)).toEqual(await describeTree(src));
    }
  });

  it('restores pax mtimes and atimes to the nanosecond on files, directories and symlinks (GNU tar --format=posix)', async () => {
    const src = join(tmp, 'src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd/f'), 'f');
    await symlink('f', join(src, 'd/l'));
    const stamp = (t: string, p: string, flags: string[] = []) => {
      execFileSync('touch', [...flags, '-m', '-d', `@${t}`, p]);
    };
    const atime = (t: string, p: string, flags: string[] = []) => execFileSync('touch', [...flags, '-a', '-d', `@${t}`, p]);
    stamp('1600000000.123456789', join(src, 'd/f'));
    atime('1500000000.000000001', join(src, 'd/f'));
    stamp('1600000001.987654321', join(src, 'd/l'), ['-h']);
    atime('1500000001.5', join(src, 'd/l'), ['-h']);
    stamp('1600000002.000000007', join(src, 'd'));
    atime('1500000002.25', join(src, 'd'));
    const tarFile = join(tmp, 'posix.tar');
    execFileSync('tar', ['--format=posix', '-cf', tarFile, '-C', src, 'd']);
    const out = join(tmp, 'out');
    await mkdir(out);
    await apply(createReadStream(tarFile), out);
    const ns = async (p: string) => {
      const st = await lstat(join(out, p), { bigint: true });
      return [st.mtimeNs, st.atimeNs];
    };
    expect(await ns('d/f')).toEqual([1_600_000_000_123_456_789n, 1_500_000_000_000_000_001n]);
    expect(await ns('d/l')).toEqual([1_600_000_001_987_654_321n, 1_500_000_001_500_000_000n]);
    expect(await ns('d')).toEqual([1_600_000_002_000_000_007n, 1_500_000_002_250_000_000n]);
  });

  it('reads a layer written by GNU tar and by the layer writer identically', async () => {
    const src = join(tmp, 'src');
    await mkdir(src);
    await sampleTree(src);
    const tarFile = join(tmp, 'gnu.tar');
    execFileSync('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '-cf', tarFile, '-C', src, '.']);
    const out = join(tmp, 'out');
    await mkdir(out);
    await apply(createReadStream(tarFile), out);
    const norm = (t: Awaited<ReturnType<typeof describeTree>>) => t.map((n) => ({ ...n, ino: n.ino === undefined ? undefined : 'linked' }));
    expect(norm(await describeTree(out))).toEqual(norm(await describeTree(src)));
  });
});

describe('apply safety', () => {
  async function setup() {
    const outside = join(tmp, 'outside');
    const dir = join(tmp, 'dir');
    await mkdir(outside);
    await mkdir(dir);
    await writeFile(join(outside, 'secret'), 'secret');
    await symlink(outside, join(dir, 'escape'));
    const before = await describeTree(outside);
    return { outside, dir, check: async () => expect(await describeTree(outside)).toEqual(before) };
  }

  it("rejects '..' components in names", async () => {
    const { dir, check } = await setup();
    await expect(apply(Readable.from([tarOf([{ name: '../outside/pwned', body: 'x' }])]), dir)).rejects.toThrow(/"\.\.\/outside\/pwned".*'\.\.'/);
    await expect(apply(Readable.from([tarOf([{ name: 'a/../../outside/secret', body: 'x' }])]), dir)).rejects.toBeInstanceOf(InvalidArgumentError);
    await check();
  });

  it('writes absolute names relative to dir', async () => {
    const { dir, check, outside } = await setup();
    await apply(Readable.from([tarOf([{ name: `/${outside}/abs`, body: 'x' }])]), dir);
    expect(await readFile(join(dir, outside, 'abs'), 'utf8')).toBe('x');
    await check();
  });

  it('never writes through a symlink in the parent path', async () => {
    const { dir, check } = await setup();
    await expect(apply(Readable.from([tarOf([{ name: 'escape/secret', body: 'pwned' }])]), dir)).rejects.toThrow(/"escape\/secret".*parent "escape" is a symlink/);
    // a symlink created by the layer itself is no way round either
    const tar = tarOf([{ name: 'evil', type: 'symlink', linkname: '../outside' }, { name: 'evil/new', body: 'x' }]);
    await expect(apply(Readable.from([tar]), dir)).rejects.toBeInstanceOf(InvalidArgumentError);
    // an entry replacing a symlink replaces the link, not its target
    await apply(Readable.from([tarOf([{ name: 'escape', body: 'file now' }])]), dir);
    expect(await readFile(join(dir, 'escape'), 'utf8')).toBe('file now');
    await check();
  });

  it('rejects hardlinks to outside dir, through symlinks, or to missing targets', async () => {
    const { dir, check } = await setup();
    await expect(apply(Readable.from([tarOf([{ name: 'h', type: 'link', linkname: '../outside/secret' }])]), dir)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(apply(Readable.from([tarOf([{ name: 'h', type: 'link', linkname: 'escape/secret' }])]), dir)).rejects.toThrow(/symlink/);
    await expect(apply(Readable.from([tarOf([{ name: 'h', type: 'link', linkname: 'missing' }])]), dir)).rejects.toThrow(/"h".*"missing" does not exist/);
    expect(existsSync(join(dir, 'h'))).toBe(false);
    await check();
  });

  it("rejects a whiteout for '../x' and never deletes through a symlink", async () => {
    const { dir, check } = await setup();
    await expect(apply(Readable.from([tarOf([{ name: '../outside/.wh.secret' }])]), dir)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(apply(Readable.from([tarOf([{ name: '.wh...' }])]), dir)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(apply(Readable.from([tarOf([{ name: 'escape/.wh.secret' }])]), dir)).rejects.toThrow(/symlink/);
    await expect(apply(Readable.from([tarOf([{ name: 'escape/.wh..wh..opq' }])]), dir)).rejects.toThrow(/symlink/);
    // whiting out the symlink itself removes the link only
    await apply(Readable.from([tarOf([{ name: '.wh.escape' }])]), dir);
    expect((await lstat(join(dir, 'escape'))).isCharacterDevice()).toBe(true);
    await check();
  });
});

describe('unpack', () => {
  it('shares the snapshot of a base layer between two images and checks diffIDs', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    const baseTar = tarOf([{ name: 'etc/', type: 'dir', mode: 0o755 }, { name: 'etc/os', body: 'base' }]);
    const appA = tarOf([{ name: 'a', body: 'A' }, { name: 'etc/.wh.os' }]);
    const appB = gzipSync(tarOf([{ name: 'b', body: 'B' }]));
    let opened = 0;
    const layer = (tar: Buffer, diffID = sha(tar)) => ({ diffID, open: async () => (opened++, Readable.from([tar])) });

    const topA = await unpack(s, [layer(baseTar), layer(appA)]);
    expect(opened).toBe(2);
    const topB = await unpack(s, [layer(baseTar), layer(appB, sha(tarOf([{ name: 'b', body: 'B' }])))]);
    expect(opened).toBe(3); // the base was not unpacked again
    expect(topB).not.toBe(topA);
    expect((await s.stat(topA!)).parent).toBe(sha(baseTar));
    expect((await s.stat(topB!)).parent).toBe(sha(baseTar));
    expect(await unpack(s, [])).toBeUndefined();

    await s.view('va', topA);
    const m = join(tmp, 'va');
    await mkdir(m);
    undo.push(mountAll(await s.mounts('va'), m));
    expect(existsSync(join(m, 'a'))).toBe(true);
    expect(existsSync(join(m, 'etc/os'))).toBe(false);

    const bad = tarOf([{ name: 'c', body: 'C' }]);
    await expect(unpack(s, [layer(baseTar), layer(bad, sha(Buffer.from('other')))])).rejects.toBeInstanceOf(DataLossError);
    const keys: string[] = [];
    await s.walk((i) => void keys.push(`${i.kind}`));
    expect(keys.filter((k) => k === 'active')).toEqual([]);
  });

  it('removes its active snapshot when a layer fails to apply, and names the entry', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    const outside = join(tmp, 'x');
    const baseTar = tarOf([{ name: 'etc/', type: 'dir', mode: 0o755 }, { name: 'etc/os', body: 'base' }]);
    const hostile = tarOf([{ name: 'fine', body: 'ok' }, { name: '../x', body: 'escaped' }]);
    const layers = [baseTar, hostile].map((t) => ({ diffID: sha(t), open: async () => Readable.from([t]) }));
    const err = await unpack(s, layers).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/layer entry "\.\.\/x"/);
    expect(existsSync(outside)).toBe(false);
    const left: string[] = [];
    await s.walk((i) => void left.push(`${i.kind}:${i.name}`));
    expect(left).toEqual([`committed:${sha(baseTar)}`]); // the base layer stays, nothing active
    // no data directory is left behind either: only the base's
    expect((await readdir(join(tmp, 'snapshots'))).filter((n) => /^\d+$/.test(n))).toHaveLength(1);
    // the same happens when the layer cannot even be read
    const unreadable = { diffID: sha(Buffer.from('y')), open: async () => Readable.from([Buffer.from('not a tar at all, just some bytes'.repeat(20))]) };
    await expect(unpack(s, [layers[0]!, unreadable])).rejects.toThrow(/not a valid tar/);
    left.length = 0;
    await s.walk((i) => void left.push(i.kind));
    expect(left).toEqual(['committed']);
  });

  it('a commit race lost to another unpacker reuses the winner', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    const tar = tarOf([{ name: 'x', body: 'x' }]);
    const results = await Promise.all([1, 2, 3].map(() => unpack(s, [{ diffID: sha(tar), open: async () => Readable.from([tar]) }])));
    expect(new Set(results)).toEqual(new Set([sha(tar)]));
    const all: string[] = [];
    await s.walk((i) => void all.push(i.name));
    expect(all).toEqual([sha(tar)]);
  });
});

