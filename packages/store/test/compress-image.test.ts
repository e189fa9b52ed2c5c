import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLossError, MediaType, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest } from '@tsbuild/oci';
import { Store, compressImage, createZstdDecompress, ingestLayer, pruneCompressionRecords, saveArchive, type CompressedLayerEvent } from '../src/index.js';

const run = promisify(execFile);

let dir: string;
let store: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'store-compress-image-'));
  store = await Store.open(join(dir, 'root'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function layerTar(files: Record<string, Buffer | string>): Readable {
  const pack = tar.pack();
  // A fixed mtime: the same files make the same tar, whenever they are packed.
  for (const [name, body] of Object.entries(files)) pack.entry({ name, mode: 0o644, mtime: new Date(0) }, Buffer.from(body));
  pack.finalize();
  return pack as unknown as Readable;
}

/** A compressible file plus some random bytes, so every layer is distinct. */
function files(tag: string): Record<string, Buffer> {
  return { [`${tag}/text`]: Buffer.from(`${tag} `.repeat(200_000)), [`${tag}/random`]: randomBytes(100_000) };
}

/** An image of plain-tar layers, as a build with --disable-compression (the default) stores it. */
async function plainImage(layerFiles: Record<string, Buffer>[], format: 'oci' | 'docker' = 'oci'): Promise<Descriptor> {
  const layers = [];
  for (const f of layerFiles) layers.push(await ingestLayer(store.content, layerTar(f), { compression: 'none' }));
  const cfg: ImageConfig = { architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) } };
  const docker = format === 'docker';
  const config = await store.putJSON(cfg, docker ? MediaType.DockerConfig : MediaType.OciConfig);
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: docker ? MediaType.DockerManifest : MediaType.OciManifest,
    config,
    layers: layers.map((l) => ({ mediaType: docker ? MediaType.DockerLayer : MediaType.OciLayer, digest: l.digest, size: l.size })),
  };
  return store.putJSON(m, m.mediaType!);
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function blobCount(): Promise<number> {
  const all = [];
  for await (const b of store.content.list()) all.push(b);
  return all.length;
}

describe('compressImage: plain-tar layers get compressed blobs when an image leaves the machine', () => {
  it('gzip: a new manifest over gzip blobs of the same tars, same config (image ID); the original stays as it was', async () => {
    const image = await plainImage([files('a'), files('b')]);
    const before = await store.image(image).manifest();
    const events: CompressedLayerEvent[] = [];
    const out = await compressImage(store, image, { format: 'gzip', onLayer: (e) => events.push(e) });
    expect(out.digest).not.toBe(image.digest);
    expect(out.mediaType).toBe(MediaType.OciManifest);
    const m = await store.image(out).manifest();
    expect(m.config).toEqual(before.config);
    expect(m.layers.map((l) => l.mediaType)).toEqual([MediaType.OciLayerGzip, MediaType.OciLayerGzip]);
    for (const [i, l] of m.layers.entries()) {
      const gz = await readFile(store.content.path(l.digest));
      expect(l.size).toBe(gz.length);
      expect(sha256(gunzipSync(gz))).toBe(before.layers[i]!.digest);
    }
    expect(events.map((e) => e.reused)).toEqual([false, false]);
    // The stored image is untouched: its layers are still the plain tars.
    expect((await store.image(image).manifest()).layers).toEqual(before.layers);
    expect((await store.fsck()).problems).toEqual([]);
  });

  it('a second compression compresses nothing: same manifest, every layer reused, no new blob', async () => {
    const image = await plainImage([files('c'), files('d')]);
    const first = await compressImage(store, image, { format: 'gzip' });
    const blobs = await blobCount();
    const events: CompressedLayerEvent[] = [];
    const second = await compressImage(store, image, { format: 'gzip', onLayer: (e) => events.push(e) });
    expect(second).toEqual(first);
    expect(events.map((e) => e.reused)).toEqual([true, true]);
    expect(await blobCount()).toBe(blobs);
  });

  it('a layer shared by two images is compressed once', async () => {
    const shared = files('shared');
    const one = await plainImage([shared, files('e')]);
    const two = await plainImage([shared, files('f')]);
    const events: CompressedLayerEvent[] = [];
    const a = await compressImage(store, one, { format: 'gzip', onLayer: (e) => events.push(e) });
    const b = await compressImage(store, two, { format: 'gzip', onLayer: (e) => events.push(e) });
    expect(events.map((e) => e.reused)).toEqual([false, false, true, false]);
    expect((await store.image(a).manifest()).layers[0]).toEqual((await store.image(b).manifest()).layers[0]);
  });

  it('a layer repeated within one image is compressed once', async () => {
    const same = files('twice');
    const image = await plainImage([same, files('g'), same]);
    const events: CompressedLayerEvent[] = [];
    const out = await compressImage(store, image, { format: 'gzip', onLayer: (e) => events.push(e) });
    expect(events.filter((e) => !e.reused)).toHaveLength(2);
    const m = await store.image(out).manifest();
    expect(m.layers[0]).toEqual(m.layers[2]);
  });

  it('zstd: zstd blobs, remembered apart from gzip ones; other levels are other blobs', async () => {
    const image = await plainImage([files('h')]);
    const gz = await store.image(await compressImage(store, image, { format: 'gzip' })).manifest();
    const zs = await store.image(await compressImage(store, image, { format: 'zstd' })).manifest();
    expect(zs.layers[0]!.mediaType).toBe(MediaType.OciLayerZstd);
    expect(zs.layers[0]!.digest).not.toBe(gz.layers[0]!.digest);
    const tarBytes = await buffer((await store.content.read(zs.layers[0]!.digest)).pipe(createZstdDecompress()));
    expect(sha256(tarBytes)).toBe((await store.image(image).manifest()).layers[0]!.digest);
    const gz9 = await store.image(await compressImage(store, image, { format: 'gzip', level: 9 })).manifest();
    expect(gz9.layers[0]!.digest).not.toBe(gz.layers[0]!.digest);
    expect(gz9.layers[0]!.size).toBeLessThan(gz.layers[0]!.size);
  });

  it('an image whose layers are compressed already is returned as it is (a pulled image keeps its manifest digest)', async () => {
    const l = await ingestLayer(store.content, layerTar(files('pulled')), { compression: 'gzip' });
    const config = await store.putJSON({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [l.diffID] } }, MediaType.DockerConfig);
    const image = await store.putJSON(
      { schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers: [{ mediaType: MediaType.DockerLayerGzip, digest: l.digest, size: l.size }] },
      MediaType.DockerManifest,
    );
    const blobs = await blobCount();
    expect(await compressImage(store, image, { format: 'gzip' })).toBe(image);
    expect(await compressImage(store, image, { format: 'zstd' })).toBe(image);
    expect(await blobCount()).toBe(blobs);
  });

  it('Docker schema 2: gzip keeps the format with Docker\'s gzip type; zstd turns it into an OCI manifest with the same config', async () => {
    const image = await plainImage([files('docker')], 'docker');
    const gz = await store.image(await compressImage(store, image, { format: 'gzip' })).manifest();
    expect(gz.mediaType).toBe(MediaType.DockerManifest);
    expect(gz.layers[0]!.mediaType).toBe(MediaType.DockerLayerGzip);
    const zd = await compressImage(store, image, { format: 'zstd' });
    expect(zd.mediaType).toBe(MediaType.OciManifest);
    const zs = await store.image(zd).manifest();
    expect(zs.mediaType).toBe(MediaType.OciManifest);
    expect(zs.config.digest).toBe(gz.config.digest);
    expect(zs.config.mediaType).toBe(MediaType.OciConfig);
    expect(zs.layers[0]!.mediaType).toBe(MediaType.OciLayerZstd);
  });

  it('an index: each platform\'s manifest compressed, platforms kept, a new index over them', async () => {
    const amd = await plainImage([files('amd')]);
    const arm = await plainImage([files('arm')]);
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    };
    const idx = await store.putJSON(index, MediaType.OciIndex);
    const out = await compressImage(store, idx, { format: 'gzip' });
    expect(out.mediaType).toBe(MediaType.OciIndex);
    const got = await store.readJSON<ImageIndex>(out.digest);
    expect(got.manifests.map((m) => m.platform?.architecture)).toEqual(['amd64', 'arm64']);
    for (const m of got.manifests) {
      expect((await store.image(m).manifest()).layers.every((l) => l.mediaType === MediaType.OciLayerGzip)).toBe(true);
    }
  });

  it('a record whose blob was collected is not trusted: the layer is compressed again', async () => {
    const image = await plainImage([files('gc')]);
    const first = await store.image(await compressImage(store, image, { format: 'gzip' })).manifest();
    await store.content.delete(first.layers[0]!.digest);
    const events: CompressedLayerEvent[] = [];
    const again = await store.image(await compressImage(store, image, { format: 'gzip', onLayer: (e) => events.push(e) })).manifest();
    expect(events.map((e) => e.reused)).toEqual([false]);
    expect(again.layers[0]!.digest).toBe(first.layers[0]!.digest);
    expect(await store.content.info(again.layers[0]!.digest)).toBeDefined();
  });

  it('pruneCompressionRecords drops the records whose blob is gone and keeps the others', async () => {
    const keepImage = await plainImage([files('keep')]);
    const kept = await store.image(await compressImage(store, keepImage, { format: 'gzip' })).manifest();
    const gone = await store.image(await compressImage(store, await plainImage([files('gone')]), { format: 'gzip' })).manifest();
    await store.content.delete(gone.layers[0]!.digest);
    const records = async () => (await readdir(join(store.root, 'compressed', 'gzip-1'))).length;
    const before = await records();
    expect(await pruneCompressionRecords(store)).toBeGreaterThanOrEqual(1);
    expect(await records()).toBeLessThan(before);
    const events: CompressedLayerEvent[] = [];
    await compressImage(store, keepImage, { format: 'gzip', onLayer: (e) => events.push(e) });
    expect(events.map((e) => e.reused)).toEqual([true]);
    expect(await store.content.info(kept.layers[0]!.digest)).toBeDefined();
  });

  it('a plain blob that no longer matches its digest is refused (DataLossError) and nothing is committed', async () => {
    const image = await plainImage([files('rot')]);
    const layer = (await store.image(image).manifest()).layers[0]!;
    const path = store.content.path(layer.digest);
    const bytes = await readFile(path);
    bytes[1000] = bytes[1000]! ^ 0xff;
    await writeFile(path, bytes);
    const blobs = await blobCount();
    await expect(compressImage(store, image, { format: 'gzip' })).rejects.toBeInstanceOf(DataLossError);
    expect(await blobCount()).toBe(blobs);
    expect(await readdir(join(store.root, 'ingest'))).toEqual([]);
  });

  it('ingestLayer checks expectedDiffID before committing, plain or compressed', async () => {
    const blobs = await blobCount();
    const wrong = sha256(Buffer.from('not this tar'));
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      await expect(ingestLayer(store.content, layerTar(files('expected')), { compression, expectedDiffID: wrong as `sha256:${string}` })).rejects.toBeInstanceOf(DataLossError);
    }
    expect(await blobCount()).toBe(blobs);
    expect(await readdir(join(store.root, 'ingest'))).toEqual([]);
  });

  it('rejects an unknown format or a level out of range before reading anything', async () => {
    const image = await plainImage([files('bad')]);
    await expect(compressImage(store, image, { format: 'lz4' as 'gzip' })).rejects.toThrow(/unknown compression format "lz4"/);
    await expect(compressImage(store, image, { format: 'gzip', level: 10 })).rejects.toThrow(/gzip level 10 is out of range/);
    await expect(compressImage(store, image, { format: 'zstd', level: 0 })).rejects.toThrow(/zstd level 0 is out of range/);
  });
});

describe('plain-tar layers leave the store readable by skopeo and umoci', () => {
  const content = { 'etc/hostname': 'plain\n', 'usr/bin/tool': 'x'.repeat(50_000) };

  it('oci-archive: skopeo reads the uncompressed layer, umoci unpacks it from the layout as saved', async () => {
    const image = await plainImage([content]);
    const archive = join(dir, 'plain.oci.tar');
    await saveArchive(store, [{ name: 'tsbuild/plain:oci', descriptor: image }], archive, 'oci-archive');
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci-archive:${archive}`])).stdout) as ImageManifest;
    expect(raw.layers[0]!.mediaType).toBe(MediaType.OciLayer);
    // skopeo copies it (compressing it on the way, as it does for any plain layer) ...
    await run('skopeo', ['copy', `oci-archive:${archive}`, `oci:${join(dir, 'plain-copy')}:t`]);
    // ... and umoci reads the uncompressed layer itself, from the archive's own layout.
    const layout = join(dir, 'plain-layout');
    await run('sh', ['-c', `mkdir -p '${layout}' && tar -xf '${archive}' -C '${layout}'`]);
    const bundle = join(dir, 'plain-bundle');
    await run('umoci', ['unpack', '--image', `${layout}:oci`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/etc/hostname'), 'utf8')).toBe('plain\n');
    expect(await readFile(join(bundle, 'rootfs/usr/bin/tool'), 'utf8')).toBe(content['usr/bin/tool']);
  });

  it('docker-archive: the plain tar goes in as stored, and skopeo lists its diffID', async () => {
    const image = await plainImage([content, files('docker-archive')], 'docker');
    const archive = join(dir, 'plain.docker.tar');
    await saveArchive(store, [{ name: 'tsbuild/plain:docker', descriptor: image }], archive, 'docker-archive');
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${archive}`]);
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toEqual((await store.image(image).config()).rootfs?.diff_ids);
    const layout = join(dir, 'plain-docker-layout');
    await run('skopeo', ['copy', `docker-archive:${archive}`, `oci:${layout}:t`]);
    const bundle = join(dir, 'plain-docker-bundle');
    await run('umoci', ['unpack', '--image', `${layout}:t`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/etc/hostname'), 'utf8')).toBe('plain\n');
  });

  it('a gzip-compressed form (compressImage) in an oci-archive: umoci unpacks the same files', async () => {
    const image = await compressImage(store, await plainImage([{ ...content, 'etc/motd': 'compressed later\n' }]), { format: 'gzip' });
    const archive = join(dir, 'compressed.oci.tar');
    await saveArchive(store, [{ name: 'tsbuild/plain:gz', descriptor: image }], archive, 'oci-archive');
    const layout = join(dir, 'compressed-layout');
    await run('skopeo', ['copy', `oci-archive:${archive}`, `oci:${layout}:t`]);
    const bundle = join(dir, 'compressed-bundle');
    await run('umoci', ['unpack', '--image', `${layout}:t`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/etc/motd'), 'utf8')).toBe('compressed later\n');
  });
});
