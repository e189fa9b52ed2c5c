import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest } from '@tsbuild/oci';
import { DEFAULT_GZIP_CHUNK_SIZE, Store, ingestLayer, saveArchive, type LayerCompression } from '../src/index.js';

const run = promisify(execFile);

/** Files big enough that the gzip stream has many chunk joins: path → content. */
const FILES = new Map<string, Buffer>();
function buildFiles(): void {
  const text = Buffer.from('#!/bin/sh\nset -e\nexec /usr/lib/tsbuild/helper "$@"\n');
  const textual = Buffer.alloc(3 * DEFAULT_GZIP_CHUNK_SIZE + 4321);
  for (let i = 0; i < textual.length; i++) textual[i] = text[i % text.length]!;
  FILES.set('usr/share/doc/big.txt', textual);
  FILES.set('usr/lib/blob.bin', randomBytes(2 * DEFAULT_GZIP_CHUNK_SIZE + 17)); // incompressible
  FILES.set('etc/hostname', Buffer.from('compressed\n'));
  for (let i = 0; i < 50; i++) FILES.set(`usr/lib/small/f${i}`, Buffer.concat([Buffer.from(`file ${i}\n`), randomBytes(i * 997)]));
}

function layerTar(): Readable {
  const pack = tar.pack();
  const dirs = new Set<string>();
  for (const name of FILES.keys()) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        pack.entry({ name: `${d}/`, type: 'directory', mode: 0o755 });
      }
    }
    pack.entry({ name, mode: 0o644 }, FILES.get(name));
  }
  pack.finalize();
  return pack as unknown as Readable;
}

let dir: string;
let store: Store;

beforeAll(async () => {
  buildFiles();
  dir = await mkdtemp(join(tmpdir(), 'store-compress-'));
  store = await Store.open(join(dir, 'root'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function imageWith(compression: LayerCompression): Promise<Descriptor> {
  const layer = await ingestLayer(store.content, layerTar(), { compression });
  const cfg: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: [layer.diffID] },
  };
  const config = await store.putJSON(cfg, MediaType.OciConfig);
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config,
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
  };
  return store.putJSON(m, MediaType.OciManifest);
}

async function listFiles(root: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix === '' ? e.name : `${prefix}/${e.name}`;
    if (e.isDirectory()) out.push(...(await listFiles(root, rel)));
    else out.push(rel);
  }
  return out;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('compressed layers interoperate with skopeo and umoci', () => {
  /** Copies with skopeo, checks it kept (or, with `args`, rewrote) our layer, unpacks with umoci. */
  async function copyAndUnpack(compression: LayerCompression, args: string[]): Promise<ImageManifest> {
    const manifest = await imageWith(compression);
    const tag = `${compression}${args.length}`;
    const archive = join(dir, `${tag}.oci.tar`);
    await saveArchive(store, [{ name: `tsbuild/compress:${tag}`, descriptor: manifest }], archive, 'oci-archive');
    const layout = join(dir, `layout-${tag}`);
    await run('skopeo', ['copy', ...args, `oci-archive:${archive}`, `oci:${layout}:t`]);
    const { stdout } = await run('skopeo', ['inspect', '--raw', `oci:${layout}:t`]);
    const bundle = join(dir, `bundle-${tag}`);
    await run('umoci', ['unpack', '--image', `${layout}:t`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    expect((await listFiles(rootfs)).sort()).toEqual([...FILES.keys()].sort());
    for (const [name, body] of FILES) {
      expect((await lstat(join(rootfs, name))).size, name).toBe(body.length);
      expect(sha(await readFile(join(rootfs, name))), name).toBe(sha(body));
    }
    await rm(bundle, { recursive: true, force: true });
    return JSON.parse(stdout) as ImageManifest;
  }

  it('a parallel-gzip layer in an oci-archive: skopeo copies it as is, umoci (Go gzip) unpacks the same files', async () => {
    const copied = await copyAndUnpack('gzip', []);
    const layer = copied.layers[0]!;
    expect(layer.mediaType).toBe(MediaType.OciLayerGzip);
    // skopeo kept our bytes, so it was umoci's Go gzip reader that read our stream.
    expect(await store.content.info(layer.digest)).toEqual({ digest: layer.digest, size: layer.size });
  });

  it('a zstd layer in an oci-archive: skopeo (Go zstd) recompresses it, umoci unpacks the same files', async () => {
    // umoci 0.4.7 rejects zstd media types, so skopeo converts on the way: it reads our zstd
    // frame with Go's decoder (klauspost/compress) and writes gzip that umoci unpacks.
    const copied = await copyAndUnpack('zstd', ['--dest-compress-format', 'gzip']);
    const layer = copied.layers[0]!;
    expect(layer.mediaType).toBe(MediaType.OciLayerGzip);
    expect(await store.content.info(layer.digest)).toBeUndefined(); // really converted
  });

  it('a zstd layer saves into a docker-archive as the plain tar (Layer.uncompressed) that skopeo reads', async () => {
    const manifest = await imageWith('zstd');
    const archive = join(dir, 'zstd.docker.tar');
    await saveArchive(store, [{ name: 'tsbuild/compress:docker', descriptor: manifest }], archive, 'docker-archive');
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${archive}`]);
    const diffIDs = (await store.image(manifest).config()).rootfs?.diff_ids;
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toEqual(diffIDs);
  });
});
