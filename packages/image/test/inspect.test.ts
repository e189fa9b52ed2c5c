import { execFileSync, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getXattr, setXattr } from '@tsbuild/linux';
import { parseReference } from '@tsbuild/oci';
import { RegistryClient, push, remoteImage } from '@tsbuild/registry-client';
import { Store, type Image } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs } from '@tsbuild/builder';
import { compareImages, diffImage, exportRootfs, flattenImage, imageHistory, listMounts, mountImage, unmountImage } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { startRegistry, type RunningRegistry } from '../../registry-client/test/registry-server.js';
import { writeFiles } from '../../builder/test/write-files.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-inspect-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
let registry: RunningRegistry | undefined;

const A = 'a'.repeat(1000);
/** Layers: 0 busybox; 1 adds /data/a.txt; 2 adds /opq/{one,two}.txt; 3 adds /data/dup.txt (same bytes as a.txt); 4 deletes, overwrites and re-creates /opq (opaque). */
const DOCKERFILE = [
  'FROM busybox',
  'COPY a.txt /data/a.txt',
  'COPY opq /opq',
  'COPY dup.txt /data/dup.txt',
  'ENV STAGE=one',
  'RUN rm /data/a.txt && echo changed > /data/dup.txt && rm -rf /opq && mkdir /opq && echo new > /opq/three.txt',
  '',
].join('\n');

const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });

async function buildImage(name: string, dockerfile: string, files: Record<string, string> = {}): Promise<Image> {
  const dir = await writeFiles(await fsp.mkdtemp(path.join(tmp, 'ctx-')), { Dockerfile: dockerfile, ...files });
  await build({ store, snapshotter, context: dir, tags: [name], stdout: quiet(), stderr: quiet() });
  return store.image((await store.resolve(name)).descriptor);
}

let first: Image;
let second: Image;

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  first = await buildImage('first', DOCKERFILE, { 'a.txt': A, 'dup.txt': A, 'opq/one.txt': 'o'.repeat(500), 'opq/two.txt': 't'.repeat(300) });
  second = await buildImage('second', 'FROM first\nENV STAGE=two\nRUN chmod 600 /data/dup.txt && ln -s /data/dup.txt /link && echo more > /opq/three.txt\n');
});

afterAll(async () => {
  for (const m of await listMounts(snapshotter).catch(() => [])) spawnSync('umount', ['-l', m.path]);
  await registry?.stop();
  await fsp.rm(tmp, { recursive: true, force: true });
});

const kinds = (changes: { kind: string; path: string }[]) => changes.map((c) => `${c.kind} ${c.path}`);

describe('diffImage', () => {
  it('lists exactly what each layer adds, changes and deletes, whiteouts and opaque directories included', async () => {
    const r = await diffImage(first);
    expect(r.layers).toHaveLength(5);
    expect(kinds(r.layers[1]!.changes)).toEqual(['A data', 'A data/a.txt']);
    expect(kinds(r.layers[2]!.changes)).toEqual(['A opq', 'A opq/one.txt', 'A opq/two.txt']);
    expect(kinds(r.layers[3]!.changes)).toEqual(['C data', 'A data/dup.txt']);
    expect(kinds(r.layers[4]!.changes)).toEqual(['C data', 'D data/a.txt', 'C data/dup.txt', 'C opq', 'D opq/one.txt', 'A opq/three.txt', 'D opq/two.txt']);
    expect(r.layers[4]!.counts).toEqual({ A: 1, C: 3, D: 3 });
    expect(r.layers[4]!.createdBy).toContain('rm /data/a.txt');
    const dup = r.layers[3]!.changes.find((c) => c.path === 'data/dup.txt')!;
    expect(dup).toMatchObject({ type: 'file', size: 1000, mode: 0o644, uid: 0, gid: 0 });
    expect(dup.sha256).toMatch(/^sha256:[a-f0-9]{64}$/);
    // The deleted entry carries the metadata of what it removed.
    expect(r.layers[4]!.changes.find((c) => c.path === 'opq/one.txt')).toMatchObject({ kind: 'D', size: 500 });
  });

  it('counts overwritten, deleted and duplicated bytes and scores efficiency as dive does', async () => {
    const { waste } = await diffImage(first);
    expect(waste.overwrittenBytes).toBe(1000);
    expect(waste.deletedBytes).toBe(1800);
    expect(waste.wastedBytes).toBe(2800);
    expect(waste.files.map((f) => [f.path, f.layer, f.hiddenBy, f.size, f.reason])).toEqual([
      ['data/a.txt', 1, 4, 1000, 'deleted'],
      ['data/dup.txt', 3, 4, 1000, 'overwritten'],
      ['opq/one.txt', 2, 4, 500, 'deleted'],
      ['opq/two.txt', 2, 4, 300, 'deleted'],
    ]);
    const same = waste.duplicates.find((d) => d.occurrences.some((o) => o.path === 'data/a.txt'));
    expect(same).toMatchObject({ size: 1000, wastedBytes: 1000, occurrences: [{ layer: 1, path: 'data/a.txt' }, { layer: 3, path: 'data/dup.txt' }] });
    // Every path's smallest size (deleted = 0, dup.txt's 8 bytes of "changed\n") over every size seen.
    expect(waste.efficiency).toBeCloseTo((waste.totalBytes - 2800) / waste.totalBytes, 10);
    expect(waste.efficiency).toBeLessThan(1);
  });

  it('--layer and path globs narrow the listing, not the waste totals', async () => {
    const r = await diffImage(first, { layer: 4, paths: ['opq/*'] });
    expect(r.layers.map((l) => l.index)).toEqual([4]);
    expect(kinds(r.layers[0]!.changes)).toEqual(['D opq/one.txt', 'A opq/three.txt', 'D opq/two.txt']);
    expect(r.waste.wastedBytes).toBe(2800);
    expect(r.waste.files.map((f) => f.path)).toEqual(['opq/one.txt', 'opq/two.txt']);
    const dir = await diffImage(first, { paths: ['data'] });
    expect(kinds(dir.layers[1]!.changes)).toEqual(['A data', 'A data/a.txt']);
  });
});

describe('history and comparison', () => {
  it('history lists every step newest first, with layer sizes for non-empty ones', async () => {
    const rows = await imageHistory(first);
    const manifest = await first.manifest();
    expect(rows).toHaveLength(6);
    expect(rows[0]).toMatchObject({ emptyLayer: false, layer: manifest.layers[4]!.digest, size: manifest.layers[4]!.size });
    expect(rows[0]!.createdBy).toContain('rm /data/a.txt');
    expect(rows[1]).toMatchObject({ emptyLayer: true, size: 0 });
    expect(rows[1]!.createdBy).toContain('STAGE=one');
    expect(rows.filter((r) => !r.emptyLayer).map((r) => r.layer)).toEqual(manifest.layers.map((l) => l.digest).reverse());
  });

  it('compares two images by content, mode, owner and link target, and their configs field by field', async () => {
    const cmp = await compareImages(first, second);
    expect(cmp.files.map((f) => [f.kind, f.path, f.fields ?? []])).toEqual([
      ['C', 'data/dup.txt', ['mode']],
      ['A', 'link', []],
      ['C', 'opq/three.txt', ['content']],
    ]);
    expect(cmp.files.find((f) => f.path === 'link')!.after).toMatchObject({ type: 'symlink', linkname: '/data/dup.txt' });
    const env = cmp.config.find((c) => c.field === 'config.Env')!;
    expect(env.before).toEqual(expect.arrayContaining(['STAGE=one']));
    expect(env.after).toEqual(expect.arrayContaining(['STAGE=two']));
    expect(cmp.config.map((c) => c.field)).toContain('rootfs.diff_ids');
    expect(await compareImages(first, first)).toEqual({ files: [], config: [] });
  });
});

describe('mount and export', () => {
  it('mounts a read-only view of the flattened filesystem and umount leaves no mount or view behind', async () => {
    const m = await mountImage(store, snapshotter, first);
    expect(m.path).toBe(path.join(store.root, 'mounts', m.imageId.slice('sha256:'.length)));
    expect(spawnSync('findmnt', ['-rn', '-o', 'TARGET', m.path], { encoding: 'utf8' }).stdout.trim()).toBe(m.path);
    expect(await fsp.readFile(path.join(m.path, 'data/dup.txt'), 'utf8')).toBe('changed\n');
    expect((await fsp.readdir(path.join(m.path, 'opq'))).sort()).toEqual(['three.txt']);
    await expect(fsp.access(path.join(m.path, 'data/a.txt'))).rejects.toThrow();
    await expect(fsp.writeFile(path.join(m.path, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    expect((await mountImage(store, snapshotter, first)).path).toBe(m.path);
    expect((await listMounts(snapshotter)).map((x) => x.path)).toEqual([m.path]);

    await unmountImage(store, snapshotter, first);
    expect(spawnSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).stdout).not.toContain(m.path);
    expect(await listMounts(snapshotter)).toEqual([]);
    expect(await snapshotter.exists(m.key)).toBe(false);
    await expect(fsp.access(m.path)).rejects.toThrow();
    await expect(unmountImage(store, snapshotter, first)).rejects.toThrow(/is not mounted/);
  });

  it('exports the flattened filesystem as one tar: tar -tf lists exactly the flattened tree, no whiteouts', async () => {
    const out = path.join(tmp, 'rootfs.tar');
    await exportRootfs(second, createWriteStream(out));
    const listed = execFileSync('tar', ['-tf', out], { encoding: 'utf8', maxBuffer: 64 << 20 })
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.replace(/\/$/, ''))
      .sort();
    expect(listed).toEqual((await flattenImage(second)).paths());
    expect(listed.some((l) => l.includes('.wh.'))).toBe(false);
    expect(listed).toContain('link');
    expect(listed).not.toContain('data/a.txt');
    const x = path.join(tmp, 'x');
    await fsp.mkdir(x);
    execFileSync('tar', ['-xf', out, '-C', x]);
    expect(await fsp.readFile(path.join(x, 'data/dup.txt'), 'utf8')).toBe('changed\n');
    expect(((await fsp.stat(path.join(x, 'data/dup.txt'))).mode & 0o777).toString(8)).toBe('600');
    expect(await fsp.readlink(path.join(x, 'link'))).toBe('/data/dup.txt');
  });
});

describe('export keeps modes exactly', () => {
  it('a mode-000 file and a setuid file come out with those modes', async () => {
    const img = await buildImage('modes', 'FROM scratch\nCOPY --chmod=000 locked /locked\nCOPY --chmod=4755 suid /suid\n', { locked: 'l', suid: 's' });
    const out = path.join(tmp, 'modes.tar');
    await exportRootfs(img, createWriteStream(out));
    const listing = execFileSync('tar', ['-tvf', out], { encoding: 'utf8' });
    expect(listing).toMatch(/^---------- 0\/0 .* locked$/m);
    expect(listing).toMatch(/^-rwsr-xr-x 0\/0 .* suid$/m);
  });
});

describe('export keeps xattrs', () => {
  it('a file capability and a user xattr come out byte for byte: GNU tar restores them, getcap reads the capability', async () => {
    const root = path.join(tmp, 'xattr-root');
    await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
    await fsp.writeFile(path.join(root, 'bin/ping'), 'not really ping\n', { mode: 0o755 });
    execFileSync('setcap', ['cap_net_raw+ep', path.join(root, 'bin/ping')]);
    const cap = getXattr(path.join(root, 'bin/ping'), 'security.capability')!;
    setXattr(path.join(root, 'bin'), 'user.tsbuild.note', Buffer.from([0, 1, 0xff, 0x80]));
    await importRootfs(store, root, 'xattrs:1');
    const out = path.join(tmp, 'xattrs.tar');
    await exportRootfs(store.image((await store.resolve('xattrs:1')).descriptor), createWriteStream(out));
    const x = path.join(tmp, 'xattrs-out');
    await fsp.mkdir(x);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', out, '-C', x]);
    expect(getXattr(path.join(x, 'bin/ping'), 'security.capability')).toEqual(cap);
    expect(execFileSync('getcap', [path.join(x, 'bin/ping')], { encoding: 'utf8' })).toMatch(/cap_net_raw[=+]ep/);
    expect(getXattr(path.join(x, 'bin'), 'user.tsbuild.note')).toEqual(Buffer.from([0, 1, 0xff, 0x80]));
  });
});

describe('remote images', () => {
  it('diffs and lists the history of an image in a registry without writing to the store', async () => {
    registry = await startRegistry();
    const client = new RegistryClient({ tlsVerify: false });
    try {
      const ref = parseReference(`${registry.host}/inspect/first:1`);
      // As stored (the build's plain-tar layers): the remote image is then byte for byte the local
      // one, digests and sizes included. A compressing push would change both, not the files.
      await push(client, store, 'first', ref, { compression: false });
      const blobsBefore = (await fsp.readdir(path.join(store.root, 'blobs/sha256'))).sort();
      const remote = await remoteImage(client, ref);
      const [local, far] = await Promise.all([diffImage(first), diffImage(remote)]);
      expect(far).toEqual(local);
      expect(await imageHistory(remote)).toEqual(await imageHistory(first));
      expect((await fsp.readdir(path.join(store.root, 'blobs/sha256'))).sort()).toEqual(blobsBefore);
    } finally {
      await client.close();
    }
  });
});
