import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, parseReference, type Descriptor, type ImageManifest } from '@tsbuild/oci';
import { Store } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { RegistryClient, pull } from '@tsbuild/registry-client';
import { diffImage, exportRootfs, imageHistory } from '@tsbuild/image';
import { build, importRootfs, runImage } from '../src/index.js';
import { startRegistry, type RunningRegistry } from '../../registry-client/test/registry-server.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

// Builds store layers as plain tars by default (buildah's --disable-compression) and compress
// them only when the image leaves the machine; the image ID never depends on compression.

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-builder-compression-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
let busyboxLayers: Descriptor[];

const EPOCH = 1_700_000_000;
const DOCKERFILE = 'FROM busybox\nCOPY a.txt /srv/a.txt\nRUN echo built > /srv/b.txt && mkdir -p /srv/d\nWORKDIR /work\n';
const FILES = { Dockerfile: DOCKERFILE, 'a.txt': 'a\n'.repeat(10_000) };

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  const base = await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  busyboxLayers = (await store.image(base.manifest).manifest()).layers;
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

let n = 0;
function ctx(files: Record<string, string>): Promise<string> {
  return writeFiles(path.join(tmp, `ctx-${n++}`), files);
}

const quiet = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

async function buildIt(extra: Partial<Parameters<typeof build>[0]> = {}, files: Record<string, string> = FILES, s: OverlaySnapshotter = snapshotter) {
  return build({ store, snapshotter: s, context: await ctx(files), stdout: quiet(), stderr: quiet(), sourceDateEpoch: EPOCH, ...extra });
}

/** The layers a build added on top of busybox. */
async function newLayers(manifest: Descriptor): Promise<ImageManifest['layers']> {
  const m = await store.image(manifest).manifest();
  return m.layers.slice(busyboxLayers.length);
}

/**
 * FILES with the Dockerfile made distinct by a LABEL right after FROM: the cache key does not
 * include compression, so a test that compresses at commit would otherwise leave its compressed
 * states in the cache for the next test's build of the same steps.
 */
function variant(tag: string): Record<string, string> {
  return { ...FILES, Dockerfile: DOCKERFILE.replace('FROM busybox\n', `FROM busybox\nLABEL variant=${tag}\n`) };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('builds store layers uncompressed by default', () => {
  let plainId: string;

  it('each committed layer is a plain tar (application/vnd.oci.image.layer.v1.tar) whose digest is its diffID', async () => {
    const r = await buildIt({ tags: ['plain'] });
    plainId = r.imageId;
    const layers = await newLayers(r.manifest);
    expect(layers).toHaveLength(3); // COPY, RUN, WORKDIR
    const diffIDs = (await store.image(r.manifest).config()).rootfs.diff_ids.slice(busyboxLayers.length);
    for (const [i, l] of layers.entries()) {
      expect(l.mediaType).toBe(MediaType.OciLayer);
      expect(l.digest).toBe(diffIDs[i]);
      const blob = await fsp.readFile(store.content.path(l.digest));
      expect(blob.length).toBe(l.size);
      expect(sha256(blob)).toBe(l.digest);
    }
    // The base image's layers (a gzip import) are kept as they are.
    expect((await store.image(r.manifest).manifest()).layers.slice(0, busyboxLayers.length)).toEqual(busyboxLayers);
  });

  it('disableCompression: false (no cache) commits gzip layers, and the image ID is the same', async () => {
    const r = await buildIt({ disableCompression: false, noCache: true, tags: ['gzipped'] });
    expect(r.imageId).toBe(plainId);
    const plain = await newLayers((await store.resolve('plain')).descriptor);
    const layers = await newLayers(r.manifest);
    for (const [i, l] of layers.entries()) {
      expect(l.mediaType).toBe(MediaType.OciLayerGzip);
      expect(sha256(gunzipSync(await fsp.readFile(store.content.path(l.digest))))).toBe(plain[i]!.digest);
    }
  });

  it('disableCompression: false from the cache: the cached plain layers are compressed too, same image ID', async () => {
    const plainBuild = await buildIt({}, variant('cached'));
    const r = await buildIt({ disableCompression: false }, variant('cached'));
    expect(r.imageId).toBe(plainBuild.imageId);
    expect(r.manifest.digest).not.toBe(plainBuild.manifest.digest);
    expect((await newLayers(r.manifest)).every((l) => l.mediaType === MediaType.OciLayerGzip)).toBe(true);
  });

  it('disableCompression: false with zstd commits zstd layers; same image ID', async () => {
    // A Dockerfile of its own: the cache key does not include compression, so these zstd
    // states would otherwise be what later builds of DOCKERFILE take from the cache.
    const files = variant('zstd');
    const plain = await buildIt({}, files);
    const r = await buildIt({ disableCompression: false, noCache: true, compression: { format: 'zstd' } }, files);
    expect(r.imageId).toBe(plain.imageId);
    expect((await newLayers(r.manifest)).every((l) => l.mediaType === MediaType.OciLayerZstd)).toBe(true);
  });

  it('--format docker: Docker\'s plain tar layer type by default, its gzip type when compressing at commit', async () => {
    const plain = await buildIt({ format: 'docker' }, variant('docker'));
    expect(plain.manifest.mediaType).toBe(MediaType.DockerManifest);
    expect((await newLayers(plain.manifest)).every((l) => l.mediaType === MediaType.DockerLayer)).toBe(true);
    const gz = await buildIt({ format: 'docker', disableCompression: false }, variant('docker'));
    expect(gz.imageId).toBe(plain.imageId);
    expect((await store.image(gz.manifest).manifest()).layers.every((l) => l.mediaType === MediaType.DockerLayerGzip)).toBe(true);
  });

  it('history shows the stored size; diff, export and run read the plain layers', async () => {
    const { descriptor } = await store.resolve('plain');
    const image = store.image(descriptor);
    const layers = await newLayers(descriptor);
    const rows = (await imageHistory(image)).filter((r) => !r.emptyLayer);
    // Newest first, as docker history lists them.
    expect(rows.slice(0, 3).map((r) => r.size)).toEqual(layers.map((l) => l.size).reverse());
    const report = await diffImage(image);
    const added = report.layers.flatMap((l) => l.changes.map((c) => c.path));
    expect(added).toEqual(expect.arrayContaining(['srv/a.txt', 'srv/b.txt']));
    const chunks: Buffer[] = [];
    await exportRootfs(image, new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
    expect(Buffer.concat(chunks).includes(Buffer.from('built\n'))).toBe(true);
    const out: Buffer[] = [];
    const res = await runImage({ store, snapshotter, image: 'plain', command: ['cat', '/srv/b.txt'], rm: true, stdout: new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }) });
    expect(res.exitCode).toBe(0);
    expect(Buffer.concat(out).toString()).toBe('built\n');
  });

  it('a fresh snapshotter unpacks the plain layers to build FROM the image', async () => {
    const fresh = await OverlaySnapshotter.open(path.join(tmp, 'fresh-snapshots'));
    const r = await buildIt({}, { Dockerfile: 'FROM plain\nRUN cat /srv/a.txt /srv/b.txt > /srv/both\n' }, fresh);
    const layer = (await newLayers(r.manifest)).at(-1)!;
    expect(layer.mediaType).toBe(MediaType.OciLayer);
    const tar = await buffer(await store.content.read(layer.digest));
    expect(tar.includes(Buffer.from('built\n'))).toBe(true);
  });
});

describe('--cache-to compresses the cache entries it pushes', () => {
  let reg: RunningRegistry;
  let client: RegistryClient;
  beforeAll(async () => {
    reg = await startRegistry();
    client = new RegistryClient();
  });
  afterAll(async () => {
    await client.close();
    await reg.stop();
  });

  it('entries reach the registry with gzip layers, and pull back with the local image ID', async () => {
    const files = variant('exported');
    const r = await buildIt({ cacheTo: `${reg.host}/cache/app`, registry: client }, files);
    expect((await newLayers(r.manifest)).every((l) => l.mediaType === MediaType.OciLayer)).toBe(true);
    const tags = (await (await fetch(`${reg.url}/v2/cache/app/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags.length).toBeGreaterThanOrEqual(4);
    const other = await Store.open(path.join(tmp, 'cache-puller'));
    for (const tag of tags.tags) {
      const got = await pull(client, other, parseReference(`${reg.host}/cache/app:${tag}`), { name: false });
      const m = await other.image(got.descriptor).manifest();
      expect(m.layers.every((l) => l.mediaType === MediaType.OciLayerGzip), tag).toBe(true);
    }
    // The last entry is the final state: the same config, so the same image ID, as the local plain image.
    const ids = await Promise.all(tags.tags.map(async (t) => (await other.image((await pull(client, other, parseReference(`${reg.host}/cache/app:${t}`), { name: false })).descriptor).configDescriptor()).digest));
    expect(ids).toContain(r.imageId);
  });
});
