import { mkdir, readdir, readFile, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InvalidArgumentError,
  MediaType,
  NotFoundError,
  digestAlgorithm,
  digestHex,
  isIndexMediaType,
  isManifestMediaType,
  layerCompression,
  ociLayerMediaType,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type ImageManifest,
} from '@tsbuild/oci';
import { randomHex } from '@tsbuild/linux';
import { checkLevel } from './compression-level.js';
import { countedStream } from './counted-stream.js';
import { ingestLayer } from './layer-ingest.js';
import { DEFAULT_GZIP_LEVEL } from './parallel-gzip.js';
import type { Store } from './store.js';
import { DEFAULT_ZSTD_LEVEL } from './zstd-stream.js';

/**
 * Compression for an image about to leave the machine (push, the registry build cache).
 *
 * Builds store their layers as plain tars, as buildah does (`--disable-compression`, its
 * default): a commit then only writes and hashes the tar, and the compression a registry wants
 * is paid when, and only if, the image is pushed. `compressImage` makes the pushable form:
 *
 *   stored manifest ──► for each plain-tar layer: a compressed blob (one streaming pass: read the
 *   tar, check it against its digest = diffID, compress, write and hash the blob) ──► a new
 *   manifest listing those blobs, stored (not named) beside the original.
 *
 * The config is untouched, so the image ID is the same in both forms. Layers already compressed
 * (pulled images, `--disable-compression=false` builds) are kept byte for byte, and an image with
 * nothing to compress is returned as it was given: a pulled image pushed elsewhere keeps its
 * manifest digest.
 *
 * Every compression is remembered under `<root>/compressed/<format>-<level>/<alg>-<hex>`
 * (uncompressed digest → compressed blob), so a second push, or another image sharing the
 * layer, reuses the blob instead of compressing again. A record is a hint, never trusted alone:
 * it is used only while the blob it names is in the store at the recorded size (a prune that
 * collected the blob just costs one compression). Records are written temp + rename without
 * fsync: a lost or torn one is a miss.
 *
 * Run it under `store.withLock('shared', …)` together with whatever uses the result: the new
 * manifest and blobs have no name, so an exclusive prune would collect them.
 */
export interface CompressImageOptions {
  format: 'gzip' | 'zstd';
  /** gzip 1–9 (default DEFAULT_GZIP_LEVEL), zstd 1–22 (default DEFAULT_ZSTD_LEVEL). */
  level?: number;
  /** Once per plain-tar layer: the blob that replaces it, and whether an earlier compression made it. */
  onLayer?: (e: CompressedLayerEvent) => void;
  /** While a layer is compressed: bytes of its tar read so far, about every MiB, and at its end. */
  onProgress?: (e: { layer: Descriptor; current: number }) => void;
}

export interface CompressedLayerEvent {
  uncompressed: Descriptor;
  compressed: Descriptor;
  /** true: found from an earlier compression; false: compressed now, taking `ms`. */
  reused: boolean;
  ms: number;
}

/** Where records of compressed layers live, under the store root. */
const RECORDS_DIR = 'compressed';

/**
 * The image (a manifest or an index) with every plain-tar layer replaced by a compressed blob.
 * Returns `image` itself when nothing needed compressing; otherwise the descriptor of a new,
 * stored manifest (or index over new manifests), keeping `platform`.
 *
 * A Docker schema 2 manifest has no zstd layer type: compressing one with zstd turns it into an
 * OCI manifest (as containers/image does), with the same config.
 */
export async function compressImage(store: Store, image: Descriptor, opts: CompressImageOptions): Promise<Descriptor> {
  const level = checkedLevel(opts);
  const memo = new Map<Digest, Promise<Descriptor>>();
  const layer = (l: Descriptor): Promise<Descriptor> => {
    let p = memo.get(l.digest);
    if (p === undefined) {
      p = compressLayerBlob(store, l, opts.format, level, opts);
      memo.set(l.digest, p);
    }
    return p;
  };
  if (isIndexMediaType(image.mediaType)) return compressIndex(store, image, opts.format, layer);
  if (!isManifestMediaType(image.mediaType)) throw new InvalidArgumentError(`cannot compress ${image.digest}: media type ${image.mediaType} is not an image`);
  return compressManifest(store, image, opts.format, layer);
}

/**
 * One layer's compressed form: `layer` itself if it is compressed already (or not stored here:
 * a foreign layer), else the remembered or a new compressed blob under the matching media type.
 * (The snapshotter benchmark times this: the cost a push pays per layer.)
 */
export async function compressLayer(store: Store, layer: Descriptor, opts: CompressImageOptions): Promise<Descriptor> {
  return compressLayerBlob(store, layer, opts.format, checkedLevel(opts), opts);
}

type LayerFn = (l: Descriptor) => Promise<Descriptor>;

async function compressIndex(store: Store, d: Descriptor, format: 'gzip' | 'zstd', layer: LayerFn): Promise<Descriptor> {
  const index = await store.readJSON<ImageIndex>(d.digest);
  let changed = false;
  const manifests: Descriptor[] = [];
  for (const child of index.manifests) {
    // A child this store lacks (an index pulled for one platform) stays as it is: whoever
    // pushes the index reports it.
    if (!isManifestMediaType(child.mediaType) || (await store.content.info(child.digest)) === undefined) {
      manifests.push(child);
      continue;
    }
    const out = await compressManifest(store, child, format, layer);
    if (out.digest !== child.digest) changed = true;
    manifests.push(out.digest === child.digest ? child : { ...child, mediaType: out.mediaType, digest: out.digest, size: out.size });
  }
  if (!changed) return d;
  // A manifest list of Docker's holds Docker manifests only; one that became OCI makes the list an OCI index.
  const oci = manifests.some((m) => m.mediaType === MediaType.OciManifest);
  const mediaType = oci ? MediaType.OciIndex : (index.mediaType ?? d.mediaType);
  const out = await store.putJSON({ ...index, ...(index.mediaType !== undefined ? { mediaType } : {}), manifests }, mediaType);
  return withPlatform(out, d);
}

async function compressManifest(store: Store, d: Descriptor, format: 'gzip' | 'zstd', layer: LayerFn): Promise<Descriptor> {
  const m = await store.readJSON<ImageManifest>(d.digest);
  if (typeof m.config !== 'object' || m.config === null || !Array.isArray(m.layers)) {
    throw new InvalidArgumentError(`cannot compress ${d.digest}: it is not an image manifest (no config or layers)`);
  }
  const plain = m.layers.filter((l) => layerCompression(l.mediaType) === 'none');
  if (plain.length === 0) return d;
  const docker = (m.mediaType ?? d.mediaType) === MediaType.DockerManifest;
  const toOci = docker && format === 'zstd';
  const layers: Descriptor[] = [];
  for (const l of m.layers) {
    // Docker's layer types name the same bytes as the image spec's: convert, then compress.
    const src = toOci ? { ...l, mediaType: ociLayerMediaType(l.mediaType) } : l;
    layers.push(layerCompression(src.mediaType) === 'none' ? await layer(src) : src);
  }
  let out: ImageManifest;
  if (toOci) {
    // Docker schema 2 has no zstd layer type (containers/image converts such pushes to OCI too).
    out = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: { ...m.config, mediaType: MediaType.OciConfig }, layers };
  } else {
    out = { ...m, layers };
  }
  return withPlatform(await store.putJSON(out, out.mediaType ?? d.mediaType), d);
}

/** The media type of a plain-tar layer type once compressed. */
function compressedMediaType(mt: string, format: 'gzip' | 'zstd'): string {
  switch (mt) {
    case MediaType.OciLayer:
      return format === 'gzip' ? MediaType.OciLayerGzip : MediaType.OciLayerZstd;
    case MediaType.DockerLayer:
      if (format === 'zstd') throw new InvalidArgumentError('Docker schema 2 has no zstd layer type');
      return MediaType.DockerLayerGzip;
    case MediaType.OciNondistributableLayer:
      return format === 'gzip' ? MediaType.OciNondistributableLayerGzip : MediaType.OciNondistributableLayerZstd;
    default:
      throw new InvalidArgumentError(`layer media type ${mt} is not a plain tar`);
  }
}

async function compressLayerBlob(
  store: Store,
  l: Descriptor,
  format: 'gzip' | 'zstd',
  level: number,
  { onLayer, onProgress }: Pick<CompressImageOptions, 'onLayer' | 'onProgress'>,
): Promise<Descriptor> {
  if (layerCompression(l.mediaType) !== 'none') return l;
  const have = await store.content.info(l.digest);
  if (have === undefined) {
    if (l.urls !== undefined && l.urls.length > 0) return l; // foreign: fetched from its urls, never pushed
    throw new NotFoundError(`cannot compress layer ${l.digest} (${l.mediaType}): the blob is not in the store`);
  }
  const mediaType = compressedMediaType(l.mediaType, format);
  // Annotations and urls of the layer stay with it.
  const described = (b: { digest: Digest; size: number }): Descriptor => ({ ...l, mediaType, digest: b.digest, size: b.size });
  const record = recordPath(store, format, level, l.digest);
  const known = await readRecord(record);
  if (known !== undefined && (await store.content.info(known.digest))?.size === known.size) {
    const out = described(known);
    onLayer?.({ uncompressed: l, compressed: out, reused: true, ms: 0 });
    return out;
  }
  const t0 = performance.now();
  // The tar is checked against its digest (= its diffID) in the same pass: a blob that rotted
  // in the store is refused instead of being compressed and pushed.
  const tar = await store.content.read(l.digest);
  const ingested = await ingestLayer(store.content, onProgress !== undefined ? countedStream(tar, (n) => onProgress({ layer: l, current: n }), { atEnd: true }) : tar, {
    compression: format,
    level,
    expectedDiffID: l.digest,
  });
  await writeRecord(record, { digest: ingested.digest, size: ingested.size });
  const out = described(ingested);
  onLayer?.({ uncompressed: l, compressed: out, reused: false, ms: performance.now() - t0 });
  return out;
}

function checkedLevel(opts: CompressImageOptions): number {
  const { format } = opts;
  if (format !== 'gzip' && format !== 'zstd') throw new InvalidArgumentError(`unknown compression format "${String(format)}": want gzip or zstd`);
  return checkLevel(format, opts.level ?? (format === 'gzip' ? DEFAULT_GZIP_LEVEL : DEFAULT_ZSTD_LEVEL));
}

function withPlatform(out: Descriptor, from: Descriptor): Descriptor {
  return from.platform !== undefined ? { ...out, platform: from.platform } : out;
}

/**
 * Drops the records whose compressed blob is gone (prune collects unnamed blobs, and the
 * compressed forms are unnamed): they would only be read and ignored. Returns how many went.
 */
export async function pruneCompressionRecords(store: Store): Promise<number> {
  const root = join(store.root, RECORDS_DIR);
  let removed = 0;
  const dirs = await readdir(root).catch(() => [] as string[]);
  for (const d of dirs) {
    const dir = join(root, d);
    const names = await readdir(dir).catch(() => [] as string[]);
    let left = names.length;
    for (const n of names) {
      const r = await readRecord(join(dir, n));
      if (r !== undefined && (await store.content.info(r.digest))?.size === r.size) continue;
      await unlink(join(dir, n)).catch(() => undefined);
      removed++;
      left--;
    }
    if (left === 0) await rmdir(dir).catch(() => undefined);
  }
  return removed;
}

function recordPath(store: Store, format: string, level: number, d: Digest): string {
  return join(store.root, RECORDS_DIR, `${format}-${level}`, `${digestAlgorithm(d)}-${digestHex(d)}`);
}

async function readRecord(path: string): Promise<{ digest: Digest; size: number } | undefined> {
  try {
    const r = JSON.parse(await readFile(path, 'utf8')) as { digest?: unknown; size?: unknown };
    if (typeof r.digest === 'string' && /^sha(256|512):[a-f0-9]+$/.test(r.digest) && typeof r.size === 'number') {
      return { digest: r.digest as Digest, size: r.size };
    }
  } catch {
    // absent, torn or unreadable: a miss
  }
  return undefined;
}

async function writeRecord(path: string, r: { digest: Digest; size: number }): Promise<void> {
  const dir = join(path, '..');
  await mkdir(dir, { recursive: true });
  const tmp = `${path}.${process.pid}-${randomHex(4)}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(r));
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
