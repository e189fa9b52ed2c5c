import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, parseReference, type Descriptor, type ImageConfig, type ImageManifest } from '@tsbuild/oci';
import { Store, ingestLayer, type CompressedLayerEvent } from '@tsbuild/store';
import { RegistryClient, pull, push, type ProgressEvent } from '../src/index.js';
import { FILES, layerTar, type FileSpec } from './image-fixture.js';
import { run, startFaultProxy, startRegistry, tempDir, type FaultProxy, type RunningRegistry } from './registry-server.js';

let reg: RunningRegistry;
let proxy: FaultProxy;
let dir: string;
let store: Store;
let client: RegistryClient;
let image: Descriptor;
let imageId: string;
/** The manifest digest of the first (gzip) push. */
let gzipPushed: string;

const SECOND: FileSpec[] = [['srv', 'dir', 0o755, ''], ['srv/app.txt', 'file', 0o644, 'app\n'.repeat(50_000)]];

/** An image as a build stores it by default (buildah's --disable-compression): plain-tar layers. */
async function plainImage(s: Store, name: string): Promise<Descriptor> {
  const layers = [];
  for (const files of [FILES, SECOND]) layers.push(await ingestLayer(s.content, layerTar(files), { compression: 'none' }));
  const cfg: ImageConfig = {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/usr/bin/hello'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
  };
  const config = await s.putJSON(cfg, MediaType.OciConfig);
  const m: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })) };
  const d = await s.putJSON(m, MediaType.OciManifest);
  await s.setName(name, d);
  return d;
}

async function rawManifest(ref: string): Promise<ImageManifest> {
  return JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])).stdout) as ImageManifest;
}

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg);
  dir = await tempDir('tsbuild-push-compression-');
  store = await Store.open(join(dir, 'store'));
  image = await plainImage(store, 'built/app:v1');
  imageId = (await store.image(image).configDescriptor()).digest;
  client = new RegistryClient();
});
afterAll(async () => {
  await client.close();
  await proxy.stop();
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('push compresses layers stored uncompressed, once', () => {
  it('the registry gets gzip layers (the default); pulled back, the image has the same ID and diffIDs', async () => {
    const events: CompressedLayerEvent[] = [];
    const progress: ProgressEvent[] = [];
    const pushed = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/app:v1`), {
      compression: { format: 'gzip', onLayer: (e) => events.push(e) },
      onProgress: (e) => progress.push(e),
    });
    expect(pushed.digest).not.toBe(image.digest);
    gzipPushed = pushed.digest;
    expect(events.map((e) => e.reused)).toEqual([false, false]);
    // Each plain layer shows its compression (bytes of the tar read, to the end), then the
    // upload of its compressed blob.
    for (const l of (await store.image(image).manifest()).layers) {
      const mine = progress.filter((e) => e.digest === l.digest);
      expect(mine.at(-1)).toEqual({ digest: l.digest, phase: 'compressed', current: l.size, total: l.size });
      expect(mine.filter((e) => e.phase === 'compressing').at(-1)?.current).toBe(l.size);
    }
    for (const e of events) expect(progress.filter((p) => p.digest === e.compressed.digest).at(-1)?.phase).toBe('done');
    const raw = await rawManifest(`${reg.host}/built/app:v1`);
    expect(raw.layers.map((l) => l.mediaType)).toEqual([MediaType.OciLayerGzip, MediaType.OciLayerGzip]);
    const stored = await store.image(image).layers();
    for (const [i, l] of raw.layers.entries()) {
      const blob = await readFile(join(reg.storage, 'docker/registry/v2/blobs/sha256', l.digest.slice(7, 9), l.digest.slice(7), 'data'));
      expect(`sha256:${createHash('sha256').update(gunzipSync(blob)).digest('hex')}`, `layer ${i}`).toBe(stored[i]!.diffID);
    }
    // The store still names the plain-tar image: compression made a second, unnamed form.
    expect((await store.resolve('built/app:v1')).descriptor.digest).toBe(image.digest);

    const other = await Store.open(join(dir, 'pulled'));
    const got = await pull(client, other, parseReference(`${reg.host}/built/app:v1`));
    expect(got.descriptor.digest).toBe(pushed.digest);
    const img = other.image(got.descriptor);
    expect((await img.configDescriptor()).digest).toBe(imageId);
    expect((await img.layers()).map((l) => l.diffID)).toEqual(stored.map((l) => l.diffID));
    expect((await other.fsck()).problems).toEqual([]);
  });

  it('the default push (no compression option) compresses with gzip too', async () => {
    const pushed = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/default:v1`));
    const raw = await rawManifest(`${reg.host}/built/default:v1`);
    expect(raw.layers.every((l) => l.mediaType === MediaType.OciLayerGzip)).toBe(true);
    expect(pushed.digest).toBe(gzipPushed);
  });

  it('a second push compresses nothing again: the same compressed blobs and manifest digest', async () => {
    const first = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/again:v1`));
    const events: CompressedLayerEvent[] = [];
    const before = new Set<string>();
    for await (const b of store.content.list()) before.add(b.digest);
    const second = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/again:v2`), {
      compression: { format: 'gzip', onLayer: (e) => events.push(e) },
    });
    expect(second.digest).toBe(first.digest);
    expect(events.map((e) => e.reused)).toEqual([true, true]);
    for await (const b of store.content.list()) expect(before.has(b.digest), `new blob ${b.digest}`).toBe(true);
  });

  it('--compression-format zstd gives zstd layers; pulled back, the same image ID', async () => {
    const pushed = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/zstd:v1`), { compression: { format: 'zstd' } });
    const raw = await rawManifest(`${reg.host}/built/zstd:v1`);
    expect(raw.layers.map((l) => l.mediaType)).toEqual([MediaType.OciLayerZstd, MediaType.OciLayerZstd]);
    const other = await Store.open(join(dir, 'pulled-zstd'));
    const got = await pull(client, other, parseReference(`${reg.host}/built/zstd:v1`));
    expect(got.descriptor.digest).toBe(pushed.digest);
    expect((await other.image(got.descriptor).configDescriptor()).digest).toBe(imageId);
    // Reading the zstd layers back gives the diffIDs the config lists.
    for (const l of await other.image(got.descriptor).layers()) {
      const h = createHash('sha256');
      for await (const c of await l.uncompressed()) h.update(c as Buffer);
      expect(`sha256:${h.digest('hex')}`).toBe(l.diffID);
    }
  });

  it('--disable-compression (compression: false) pushes the plain tars as stored, manifest digest kept', async () => {
    const pushed = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/plain:v1`), { compression: false });
    expect(pushed.digest).toBe(image.digest);
    const raw = await rawManifest(`${reg.host}/built/plain:v1`);
    expect(raw.layers.every((l) => l.mediaType === MediaType.OciLayer)).toBe(true);
  });

  it('--format docker with gzip: a schema 2 manifest with Docker gzip layers', async () => {
    const pushed = await push(client, store, 'built/app:v1', parseReference(`${reg.host}/built/docker:v1`), { format: 'docker' });
    expect(pushed.mediaType).toBe(MediaType.DockerManifest);
    const raw = await rawManifest(`${reg.host}/built/docker:v1`);
    expect(raw.layers.every((l) => l.mediaType === MediaType.DockerLayerGzip)).toBe(true);
  });

  it('a pulled image pushed elsewhere keeps its manifest digest and is mounted, not recompressed', async () => {
    const s2 = await Store.open(join(dir, 'relay'));
    const src = parseReference(`${proxy.host}/built/app:v1`);
    const pulled = await pull(client, s2, src);
    const blobs = new Set<string>();
    for await (const b of s2.content.list()) blobs.add(b.digest);
    const progress: ProgressEvent[] = [];
    const compressed: CompressedLayerEvent[] = [];
    const pushed = await push(client, s2, pulled.name, parseReference(`${proxy.host}/relay/app:v1`), {
      compression: { format: 'gzip', onLayer: (e) => compressed.push(e) },
      onProgress: (e) => progress.push(e),
    });
    expect(pushed.digest).toBe(pulled.descriptor.digest);
    expect(compressed).toEqual([]);
    expect(progress.filter((e) => e.phase === 'mounted')).toHaveLength(3); // config and both layers
    for await (const b of s2.content.list()) expect(blobs.has(b.digest)).toBe(true);
    // zstd asked: the layers are gzip already, so they still go as they are.
    const z = await push(client, s2, pulled.name, parseReference(`${proxy.host}/relay/app:z`), { compression: { format: 'zstd' } });
    expect(z.digest).toBe(pulled.descriptor.digest);
  });

  it('skopeo copies the pushed image and umoci unpacks it to the same files', async () => {
    const layout = join(dir, 'skopeo-layout');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/built/app:v1`, `oci:${layout}:v1`]);
    const bundle = join(dir, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/usr/bin/hello'), 'utf8')).toBe('#!/bin/sh\necho hello\n');
    expect(await readFile(join(bundle, 'rootfs/srv/app.txt'), 'utf8')).toBe('app\n'.repeat(50_000));
    const zlayout = join(dir, 'skopeo-zstd');
    await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-compress-format', 'gzip', `docker://${reg.host}/built/zstd:v1`, `oci:${zlayout}:v1`]);
    const zbundle = join(dir, 'bundle-zstd');
    await run('umoci', ['unpack', '--image', `${zlayout}:v1`, zbundle]);
    expect(await readFile(join(zbundle, 'rootfs/srv/app.txt'), 'utf8')).toBe('app\n'.repeat(50_000));
  });
});
