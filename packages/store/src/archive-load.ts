import { createReadStream } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import {
  DataLossError,
  InvalidArgumentError,
  MediaType,
  isDigest,
  isIndexMediaType,
  isTsbuildError,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  zlib,
  crypto,
} from '@tsbuild/oci';
import type { Store } from './store.js';
import { ingestLayer, type IngestedLayer } from './layer-ingest.js';
import { normaliseName } from './image-names.js';
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from './archive-save.js';

export interface LoadedImage {
  name?: string;
  descriptor: Descriptor;
}

/**
 * Metadata files (manifest.json, index.json, configs) are read into memory, so what they may take
 * is bounded: each one (bigger unknown entries are skipped, a bigger manifest.json or index.json
 * is refused) and all of them together (an archive of many small files must not add up to
 * gigabytes). A config is a few KB; docker's own daemon caps a config at 8 MiB.
 */
const MAX_METADATA = 32 << 20;
const MAX_METADATA_TOTAL = 64 << 20;
const INDEX_FILES = new Set(['manifest.json', 'index.json', 'oci-layout']);
const BLOB_PATH = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/;

/**
 * Loads images from `path`: an oci-archive (tar of an OCI image layout), a docker-archive
 * (`docker save` format, legacy or with an OCI layout inside), either one gzip-compressed, or an
 * OCI image layout directory. Every blob is verified against its digest as it is stored, and
 * every layer against the config's diffIDs; names are set only once all of that succeeded, so a
 * bad archive leaves nothing named (its verified blobs are garbage for the next gc).
 *
 * - oci: manifests and blobs are kept as they are (same manifest digest). An image is named from
 *   `io.containerd.image.name`, else from `org.opencontainers.image.ref.name` when that is a full
 *   reference; a bare tag names nothing (there is no repository to put it in).
 * - docker: the config is kept byte-identical (same image ID). Each layer tar is stored as it
 *   is, uncompressed (application/vnd.oci.image.layer.v1.tar), as tsbuild stores the layers it
 *   builds (push compresses them); an OCI manifest is written and every RepoTag becomes a name.
 * The caller holds the store's shared lock.
 */
export async function loadArchive(store: Store, path: string): Promise<LoadedImage[]> {
  const st = await stat(path);
  const loaded = st.isDirectory() ? await loadLayoutDir(store, path) : await loadTar(store, path);
  for (const img of loaded) if (img.name !== undefined) await store.setName(img.name, img.descriptor);
  return loaded;
}

async function loadTar(store: Store, path: string): Promise<LoadedImage[]> {
  const head = Buffer.alloc(2);
  const fh = await open(path, 'r');
  try {
    await fh.read(head, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const gzipped = head[0] === 0x1f && head[1] === 0x8b;

  const smallFiles = new Map<string, Buffer>();
  let smallBytes = 0;
  const layerFiles = new Map<string, IngestedLayer>();
  const links = new Map<string, string>();
  const blobs = new Set<Digest>();

  // tar-stream loads only when an archive is read: other commands share this module's chunk.
  const { default: tar } = await import('tar-stream');
  const extract = tar.extract();
  const feeding = gzipped
    ? pipeline(createReadStream(path), zlib().createGunzip(), extract)
    : pipeline(createReadStream(path), extract);
  // Awaited after the loop; a truncated or corrupt archive rejects it while the loop is still
  // busy with an entry, and an unhandled rejection would end the process there, leaving the
  // blob being written in ingest/. The loop sees the same error through the entry it reads.
  feeding.catch(() => undefined);
  try {
    for await (const entry of extract) {
      const name = cleanPath(entry.header.name);
      const type = entry.header.type;
      const body = entry as unknown as Readable;
      if (type === 'file' || type === 'contiguous-file') {
        const blob = BLOB_PATH.exec(name);
        if (blob !== null) {
          const expected = `${blob[1]}:${blob[2]}`;
          if (!isDigest(expected)) throw new DataLossError(`${path}: ${name} is not named by a valid digest`);
          const w = await store.content.write({ expected, size: entry.header.size ?? 0 });
          try {
            await pipeline(body, w);
          } catch (e) {
            await w.abort();
            throw e;
          }
          await w.commit().catch((e: Error) => {
            throw new DataLossError(`${path}: ${name}: ${e.message}`);
          });
          blobs.add(expected);
        } else if (name.endsWith('.tar')) {
          layerFiles.set(name, await ingestLayer(store.content, body, { compression: 'none' }));
        } else if ((entry.header.size ?? 0) <= MAX_METADATA) {
          smallBytes += entry.header.size ?? 0;
          if (smallBytes > MAX_METADATA_TOTAL) {
            throw new DataLossError(`${path}: metadata files add up to more than ${MAX_METADATA_TOTAL} bytes (at ${name})`);
          }
          smallFiles.set(name, await buffer(body));
        } else if (INDEX_FILES.has(name)) {
          throw new DataLossError(`${path}: ${name} is ${entry.header.size} bytes, more than the ${MAX_METADATA} a metadata file may have`);
        } else {
          body.resume();
        }
      } else if (type === 'symlink' && entry.header.linkname) {
        // docker save links a layer seen twice to its first copy (../<id>/layer.tar).
        links.set(name, posix.normalize(posix.join(posix.dirname(name), entry.header.linkname)));
        body.resume();
      } else if (type === 'link' && entry.header.linkname) {
        links.set(name, cleanPath(entry.header.linkname));
        body.resume();
      } else {
        body.resume();
      }
    }
    await feeding;
  } catch (e) {
    extract.destroy();
    await feeding.catch(() => undefined);
    if (isTsbuildError(e)) throw e;
    throw new DataLossError(`${path}: not a readable archive: ${(e as Error).message}`, { cause: e });
  }

  const resolveLink = (p: string): string => {
    let cur = cleanPath(p);
    for (let i = 0; i < 16 && links.has(cur); i++) cur = links.get(cur) as string;
    return cur;
  };

  if (smallFiles.has('index.json') && smallFiles.has('oci-layout')) {
    const index = parseJSON<unknown>(smallFiles.get('index.json') as Buffer, `${path}: index.json`);
    return ociImages(store, index, `${path}: index.json`);
  }
  if (smallFiles.has('manifest.json')) {
    const manifest = dockerManifest(parseJSON<unknown>(smallFiles.get('manifest.json') as Buffer, `${path}: manifest.json`), `${path}: manifest.json`);
    const out: LoadedImage[] = [];
    for (const m of manifest) {
      out.push(...(await dockerImage(store, m, path, resolveLink, smallFiles, layerFiles)));
    }
    return out;
  }
  throw new DataLossError(`${path}: neither an OCI layout (oci-layout, index.json) nor a docker archive (manifest.json)`);
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/**
 * manifest.json as `docker save` writes it: a list of {Config, RepoTags, Layers}, paths relative
 * to the archive's root. Anything else is refused here, in one line naming the entry, before a
 * field of it is used.
 */
function dockerManifest(value: unknown, where: string): DockerManifestEntry[] {
  if (!Array.isArray(value)) throw new DataLossError(`${where} is not a list`);
  return value.map((m: unknown, i) => {
    const at = `${where}: entry ${i}`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new DataLossError(`${at} is not an object`);
    const { Config, RepoTags, Layers } = m as Record<string, unknown>;
    if (typeof Config !== 'string' || Config === '') throw new DataLossError(`${at} has no Config path`);
    if (!Array.isArray(Layers) || !Layers.every((l) => typeof l === 'string' && l !== '')) throw new DataLossError(`${at}: Layers is not a list of paths`);
    if (RepoTags != null && (!Array.isArray(RepoTags) || !RepoTags.every((t) => typeof t === 'string'))) {
      throw new DataLossError(`${at}: RepoTags is not a list of names`);
    }
    // Paths name files inside the archive; one that climbs out of it is not docker's.
    for (const p of [Config, ...(Layers as string[])]) {
      if (p.split('/').includes('..')) throw new DataLossError(`${at}: path "${p}" has a '..' component`);
    }
    const tags = (RepoTags ?? []) as string[];
    for (const t of tags) nameOf(t, `${at}: RepoTags`);
    return { Config, RepoTags: tags, Layers: Layers as string[] };
  });
}

/** A name from an archive, normalised; a bad one is refused naming where it was found. */
function nameOf(name: string, where: string): string {
  try {
    return normaliseName(name);
  } catch (e) {
    throw new DataLossError(`${where}: ${(e as Error).message}`);
  }
}

/** A descriptor read from an archive or an image layout: checked before any field is used. */
function descriptorOf(value: unknown, where: string): Descriptor {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new DataLossError(`${where}: a descriptor is not an object`);
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') throw new DataLossError(`${where}: a descriptor has no mediaType`);
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) throw new DataLossError(`${where}: invalid digest "${String(d.digest)}"`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw new DataLossError(`${where}: blob ${d.digest} has an invalid size "${String(d.size)}"`);
  return value as Descriptor;
}

/** The descriptors an index (its manifests) or a manifest (config, layers) refers to; none for other blobs. */
async function childrenOf(store: Store, d: Descriptor, where: string): Promise<Descriptor[]> {
  const isIndex = isIndexMediaType(d.mediaType);
  if (!isIndex && d.mediaType !== MediaType.OciManifest && d.mediaType !== MediaType.DockerManifest) return [];
  const body = await store.readJSON<unknown>(d.digest);
  const at = `${where}: ${isIndex ? 'index' : 'manifest'} ${d.digest}`;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new DataLossError(`${at} is not a JSON object`);
  const b = body as Record<string, unknown>;
  if (isIndex) {
    if (!Array.isArray(b.manifests)) throw new DataLossError(`${at} has no manifests list`);
    return b.manifests.map((m) => descriptorOf(m, at));
  }
  if (!Array.isArray(b.layers)) throw new DataLossError(`${at} has no layers list`);
  return [descriptorOf(b.config, at), ...b.layers.map((l) => descriptorOf(l, at))];
}

async function dockerImage(
  store: Store,
  m: DockerManifestEntry,
  path: string,
  resolveLink: (p: string) => string,
  smallFiles: Map<string, Buffer>,
  layerFiles: Map<string, IngestedLayer>,
): Promise<LoadedImage[]> {
  const configPath = resolveLink(m.Config);
  const configBlob = BLOB_PATH.exec(configPath);
  let configBytes = smallFiles.get(configPath);
  if (configBytes === undefined && configBlob !== null) {
    configBytes = await buffer(await store.content.read(`${configBlob[1]}:${configBlob[2]}` as Digest));
  }
  if (configBytes === undefined) throw new DataLossError(`${path}: config ${m.Config} named in manifest.json is not in the archive`);
  // docker names the config file after its digest (<hex>.json): check it, the image ID depends on it.
  const named = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(configPath);
  const configInfo = await store.content.writeBuffer(configBytes, named !== null ? (`sha256:${named[1]}` as Digest) : undefined).catch((e: Error) => {
    throw new DataLossError(`${path}: config ${m.Config}: ${e.message}`);
  });
  const config = parseJSON<ImageConfig | null>(configBytes, `${path}: config ${m.Config}`);
  const diffIDs: unknown = config?.rootfs?.diff_ids ?? [];
  if (!Array.isArray(diffIDs)) throw new DataLossError(`${path}: config ${m.Config}: rootfs.diff_ids is not a list`);
  if (diffIDs.length !== m.Layers.length) {
    throw new DataLossError(`${path}: manifest.json lists ${m.Layers.length} layers but config ${m.Config} lists ${diffIDs.length} diff_ids`);
  }

  const layers: Descriptor[] = [];
  for (const [i, l] of m.Layers.entries()) {
    const lp = resolveLink(l);
    let desc: Descriptor & { diffID: Digest };
    const ingested = layerFiles.get(lp);
    const blob = BLOB_PATH.exec(lp);
    if (ingested !== undefined) {
      desc = { mediaType: ingested.mediaType, digest: ingested.digest, size: ingested.size, diffID: ingested.diffID };
    } else if (blob !== null) {
      // docker >= 25 writes an OCI layout inside the archive; its layer blobs are kept as they are.
      const digest = `${blob[1]}:${blob[2]}` as Digest;
      const info = await store.content.info(digest);
      if (info === undefined) throw new DataLossError(`${path}: layer ${l} named in manifest.json is not in the archive`);
      const { gzip, diffID } = await layerDiffID(store, digest);
      desc = { mediaType: gzip ? MediaType.OciLayerGzip : MediaType.OciLayer, digest, size: info.size, diffID };
    } else {
      throw new DataLossError(`${path}: layer ${l} named in manifest.json is not in the archive`);
    }
    if (desc.diffID !== diffIDs[i]) {
      throw new DataLossError(`${path}: layer ${l} has diffID ${desc.diffID}, config ${m.Config} says ${diffIDs[i]}`);
    }
    layers.push({ mediaType: desc.mediaType, digest: desc.digest, size: desc.size });
  }
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configInfo.digest, size: configInfo.size },
    layers,
  };
  const descriptor = await store.putJSON(manifest, MediaType.OciManifest);
  const tags = (m.RepoTags ?? []).map((t) => nameOf(t, `${path}: manifest.json: RepoTags`));
  return tags.length === 0 ? [{ descriptor }] : tags.map((name) => ({ name, descriptor }));
}

/** sha256 of the layer tar, gunzipping the blob if it is gzip. */
async function layerDiffID(store: Store, d: Digest): Promise<{ gzip: boolean; diffID: Digest }> {
  const fh = await open(store.content.path(d), 'r');
  const head = Buffer.alloc(2);
  try {
    await fh.read(head, 0, 2, 0);
  } finally {
    await fh.close();
  }
  if (!(head[0] === 0x1f && head[1] === 0x8b)) return { gzip: false, diffID: d };
  const hash = crypto().createHash('sha256');
  for await (const chunk of (await store.content.read(d)).pipe(zlib().createGunzip())) hash.update(chunk as Buffer);
  return { gzip: true, diffID: `sha256:${hash.digest('hex')}` };
}

/** Checks that every image of an OCI index (`where` names index.json) is complete in the store and names it. */
async function ociImages(store: Store, index: unknown, where: string): Promise<LoadedImage[]> {
  const manifests = (index as ImageIndex | null)?.manifests;
  if (!Array.isArray(manifests)) throw new DataLossError(`${where} has no manifests list`);
  const out: LoadedImage[] = [];
  for (const value of manifests as unknown[]) {
    const m = descriptorOf(value, where);
    await checkComplete(store, m, where);
    const descriptor: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.size };
    if (m.platform !== undefined) descriptor.platform = m.platform;
    const name = ociName(m, where);
    out.push(name !== undefined ? { name, descriptor } : { descriptor });
  }
  return out;
}

function ociName(m: Descriptor, where: string): string | undefined {
  const full = m.annotations?.[ANNOTATION_IMAGE_NAME];
  if (typeof full === 'string') return nameOf(full, `${where}: ${ANNOTATION_IMAGE_NAME}`);
  const ref = m.annotations?.[ANNOTATION_REF_NAME];
  // A tag holds neither ':' nor '/': anything with one is a reference (skopeo `oci-archive:F:x/y:z`).
  if (typeof ref === 'string' && /[:/]/.test(ref)) return nameOf(ref, `${where}: ${ANNOTATION_REF_NAME}`);
  return undefined;
}

async function checkComplete(store: Store, d: Descriptor, where: string): Promise<void> {
  const info = await store.content.info(d.digest);
  if (info === undefined) throw new DataLossError(`${where}: blob ${d.digest} (${d.mediaType}) is not in the archive`);
  if (info.size !== d.size) throw new DataLossError(`${where}: blob ${d.digest} is ${info.size} bytes, its descriptor says ${d.size}`);
  for (const c of await childrenOf(store, d, where)) await checkComplete(store, c, where);
}

/** An OCI image layout directory: blobs referenced from index.json are copied in and verified. */
async function loadLayoutDir(store: Store, dir: string): Promise<LoadedImage[]> {
  const indexPath = join(dir, 'index.json');
  const indexSize = (await stat(indexPath).catch(() => {
    throw new InvalidArgumentError(`${dir} is not an OCI image layout: no index.json`);
  })).size;
  if (indexSize > MAX_METADATA) throw new DataLossError(`${indexPath} is ${indexSize} bytes, more than the ${MAX_METADATA} a metadata file may have`);
  const index = parseJSON<ImageIndex | null>(await readFile(indexPath), indexPath);
  if (!Array.isArray(index?.manifests)) throw new DataLossError(`${indexPath} has no manifests list`);
  const copy = async (d: Descriptor): Promise<void> => {
    if ((await store.content.info(d.digest)) === undefined) {
      const [alg, hex] = d.digest.split(':') as [string, string];
      const file = join(dir, 'blobs', alg, hex);
      const w = await store.content.write({ expected: d.digest, size: d.size });
      try {
        await pipeline(createReadStream(file), w);
      } catch (e) {
        await w.abort();
        throw new DataLossError(`${file}: ${(e as Error).message}`);
      }
      await w.commit().catch((e: Error) => {
        throw new DataLossError(`${file}: ${e.message}`);
      });
    }
    for (const c of await childrenOf(store, d, indexPath)) await copy(c);
  };
  for (const m of index!.manifests as unknown[]) await copy(descriptorOf(m, indexPath));
  return ociImages(store, index, indexPath);
}

function cleanPath(p: string): string {
  const n = posix.normalize(p).replace(/^(\.\/)+/, '').replace(/^\/+/, '');
  return n.endsWith('/') ? n.slice(0, -1) : n;
}

function parseJSON<T>(buf: Buffer, where: string): T {
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch (e) {
    throw new DataLossError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
}
