import { createReadStream } from 'node:fs';
import {
  DataLossError,
  InvalidArgumentError,
  MediaType,
  NotFoundError,
  dockerLayerMediaType,
  isIndexMediaType,
  isManifestMediaType,
  layerCompression,
  ociLayerMediaType,
  parseReference,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Reference,
} from '@tsbuild/oci';
import { compressImage, type CompressImageOptions, type Store } from '@tsbuild/store';
import { mapLimit } from './bounded-concurrency.js';
import { MAX_MANIFEST_SIZE, type ProgressEvent, type RegistryClient } from './registry-client.js';

export interface PushOptions {
  /**
   * Default: the manifests in the format stored (byte for byte when nothing was compressed, so
   * a pulled image keeps its digests). 'docker'
   * rewrites OCI manifests and indexes as Docker schema 2 and manifest lists; 'oci' the other
   * way. A rewritten manifest has, by necessity, a new digest; a compressed blob is never
   * recompressed (only plain-tar layers are compressed, see `compression`).
   */
  format?: 'oci' | 'docker';
  /**
   * How layers stored as plain tars (what builds store, as buildah does) are compressed on the
   * way out: compressImage of @tsbuild/store, which remembers each compressed blob so a second
   * push compresses nothing. Layers already compressed go as they are. Default gzip at its
   * default level, as buildah and skopeo push; false pushes every blob as stored.
   */
  compression?: CompressImageOptions | false;
  /**
   * For a manifest list: 'all' (the default) pushes every image of the list before the list
   * (buildah's `manifest push --all`); 'none' pushes the list alone, its images being in the
   * registry already (`manifest push` without --all). Either way an entry in `remoteEntries` whose
   * manifest is not in the store (added from a registry, never pulled) is not pushed: the
   * registry must have it.
   */
  listImages?: 'all' | 'none';
  remoteEntries?: ReadonlySet<string>;
  /** Repositories of the destination registry that may hold the blobs (tried for cross-repository mounts). */
  mountFrom?: Reference[];
  onProgress?: (e: ProgressEvent) => void;
}

/**
 * Pushes an image of the store (a name, an ID, or a descriptor) to `dest`: its plain-tar layers
 * compressed first (`compression`), then blobs (`client.concurrency` at a time, largest first,
 * each HEAD-checked, mounted from another repository of the registry when the image was pulled
 * from one, else uploaded), then each platform's manifest by digest, then the top manifest or
 * index under dest's tag. Returns the pushed top descriptor.
 *
 * Holds the store's shared lock while it compresses and uploads: the compressed form has no
 * name, and a prune must not collect it mid-push. Before it (names and manifests are replaced
 * atomically, blobs never change) the name is resolved, and the requests that need no answer yet
 * are sent: an upload session is opened and the first blobs are asked about while the lock is
 * taken (which loads the libc addon).
 */
export async function push(client: RegistryClient, store: Store, image: string | Descriptor, dest: Reference, opts: PushOptions = {}): Promise<Descriptor> {
  client.warmUp(dest.domain);
  try {
    const { top, sources } = await prepare(client, store, image, dest, opts);
    return await store.withLock('shared', () => pushLocked(client, store, top, sources, dest, opts));
  } finally {
    client.forgetChecks({ domain: dest.domain, path: dest.path });
  }
}

async function prepare(client: RegistryClient, store: Store, image: string | Descriptor, dest: Reference, opts: PushOptions): Promise<{ top: Descriptor; sources: Reference[] }> {
  let top: Descriptor;
  let names: string[] = [];
  if (typeof image === 'string') ({ descriptor: top, names } = await store.resolve(image));
  else top = image;
  // Where the image came from: a pulled image is named by its source, and a registry can
  // mount a blob from another of its repositories instead of receiving it again.
  const sources = [...(opts.mountFrom ?? []), ...names.map((n) => parseReference(n))].filter(
    (r) => r.domain === dest.domain && r.path !== dest.path,
  );
  const repo: Reference = { domain: dest.domain, path: dest.path };
  // Nothing to mount from means uploads: open a session now. And ask now about the first blobs
  // that go as they are stored (compressed layers, the config).
  if (sources.length === 0) client.prepareUpload(repo);
  if (isManifestMediaType(top.mediaType)) {
    const m = await readManifest(store, top).then((body) => parseManifest(body, top), () => undefined);
    if (m !== undefined) {
      const asStored = [m.config, ...m.layers.filter((l) => opts.compression === false || layerCompression(l.mediaType) !== 'none')];
      client.checkBlobs(repo, largestFirst(asStored).slice(0, client.concurrency));
    }
  }
  return { top, sources };
}

async function pushLocked(client: RegistryClient, store: Store, image: Descriptor, sources: Reference[], dest: Reference, opts: PushOptions): Promise<Descriptor> {
  let top = image;
  const repo: Reference = { domain: dest.domain, path: dest.path };
  const compression = opts.compression ?? { format: 'gzip' };
  // A list pushed alone references its images as they are: compressing them would change their digests.
  const listAlone = opts.listImages === 'none' && isIndexMediaType(top.mediaType);
  if (compression !== false && !listAlone) {
    top = await compressImage(store, top, {
      ...compression,
      onProgress: (e) => {
        opts.onProgress?.({ digest: e.layer.digest, phase: 'compressing', current: e.current, total: e.layer.size });
        compression.onProgress?.(e);
      },
      onLayer: (e) => {
        if (!e.reused) opts.onProgress?.({ digest: e.uncompressed.digest, phase: 'compressed', current: e.uncompressed.size, total: e.uncompressed.size });
        compression.onLayer?.(e);
      },
    });
  }
  const progress = (e: ProgressEvent) => opts.onProgress?.(e);

  const pushBlobs = async (blobs: Descriptor[]): Promise<void> => {
    const seen = new Set<string>();
    const unique = largestFirst(blobs.filter((b) => !seen.has(b.digest) && seen.add(b.digest)));
    for (const b of unique) progress({ digest: b.digest, phase: 'waiting', current: 0, total: b.size });
    await mapLimit(unique, client.concurrency, async (b) => {
      const have = await store.content.info(b.digest);
      if (have === undefined) {
        if (b.urls !== undefined && b.urls.length > 0) return; // a foreign layer: the registry does not hold it
        throw new NotFoundError(`cannot push ${b.digest} (${b.mediaType}): the blob is not in the store`);
      }
      const path = store.content.path(b.digest);
      await client.putBlob(repo, b, () => createReadStream(path, { highWaterMark: 1 << 20 }), {
        bodyAt: (start) => createReadStream(path, { start, highWaterMark: 1 << 20 }),
        ...(sources[0] !== undefined ? { mountFrom: sources[0] } : {}),
        onProgress: progress,
      });
      progress({ digest: b.digest, phase: 'done', current: b.size, total: b.size });
    });
  };

  const pushImage = async (d: Descriptor, target: Reference): Promise<Descriptor> => {
    const body = await readManifest(store, d);
    const m = parseManifest(body, d);
    await pushBlobs([m.config, ...m.layers]);
    // The last blobs are in place: an upload session no blob took is cancelled with the manifest.
    if (d === top) client.cancelPreparedUpload(repo);
    const [out, mediaType] = convertManifest(m, body, d, opts.format);
    const pushed = await client.putManifest(target, out, mediaType);
    return { ...pushed, ...(d.platform !== undefined ? { platform: d.platform } : {}) };
  };

  if (isIndexMediaType(top.mediaType)) {
    const body = await readManifest(store, top);
    const index = JSON.parse(body.toString('utf8')) as ImageIndex;
    const children: Descriptor[] = [];
    for (const child of index.manifests) {
      const present = (await store.content.info(child.digest)) !== undefined;
      if (opts.listImages === 'none' || (!present && opts.remoteEntries?.has(child.digest) === true)) {
        // Not pushed here: the entry stays as it is (converting it would change its digest).
        children.push(child);
        continue;
      }
      if (!present) {
        throw new NotFoundError(`cannot push index ${top.digest}: its manifest ${child.digest} (${child.platform ? `${child.platform.os}/${child.platform.architecture}` : 'no platform'}) is not in the store`);
      }
      if (!isManifestMediaType(child.mediaType)) throw new InvalidArgumentError(`cannot push index ${top.digest}: nested ${child.mediaType} is not supported`);
      const pushed = await pushImage(child, repo);
      children.push({ ...child, mediaType: pushed.mediaType, digest: pushed.digest, size: pushed.size });
    }
    const [out, mediaType] = convertIndex(index, body, top, children, opts.format);
    client.cancelPreparedUpload(repo);
    return client.putManifest(dest, out, mediaType);
  }
  if (!isManifestMediaType(top.mediaType)) throw new InvalidArgumentError(`cannot push ${top.digest}: media type ${top.mediaType} is not an image`);
  return pushImage(top, dest);
}

function parseManifest(body: Buffer, d: Descriptor): ImageManifest {
  const m = JSON.parse(body.toString('utf8')) as ImageManifest;
  if (typeof m.config !== 'object' || m.config === null || !Array.isArray(m.layers)) {
    throw new DataLossError(`manifest ${d.digest} in the store has no config or layers`);
  }
  return m;
}

/**
 * Blobs in the order to upload them: the largest first, so with `concurrency` uploads at a time
 * the last to finish is a small one (and the first HEADs and the prepared session go to the big ones).
 */
function largestFirst(blobs: Descriptor[]): Descriptor[] {
  return [...blobs].sort((a, b) => b.size - a.size);
}

async function readManifest(store: Store, d: Descriptor): Promise<Buffer> {
  const info = await store.content.info(d.digest);
  if (info === undefined) throw new NotFoundError(`manifest ${d.digest} is not in the store`);
  if (info.size > MAX_MANIFEST_SIZE) throw new InvalidArgumentError(`manifest ${d.digest} is ${info.size} bytes, over the 4 MiB limit`);
  return store.content.readBuffer(d.digest);
}

/**
 * The bytes to push for a manifest: as stored unless the format changes. Docker schema 2 has
 * the same shape as an OCI manifest with its own media types and no annotations; it carries
 * gzip (or plain tar) layers only, so a zstd layer cannot be expressed and is refused.
 */
function convertManifest(m: ImageManifest, body: Buffer, d: Descriptor, format: 'oci' | 'docker' | undefined): [Buffer, string] {
  const current = m.mediaType ?? d.mediaType;
  if (format === undefined || (format === 'docker') === (current === MediaType.DockerManifest)) return [body, current];
  if (format === 'docker') {
    const layers = m.layers.map((l) => {
      const mt = dockerLayerMediaType(l.mediaType);
      if (mt === undefined) throw new InvalidArgumentError(`cannot push ${d.digest} as Docker schema 2: layer ${l.digest} is ${l.mediaType}`);
      return { mediaType: mt, size: l.size, digest: l.digest, ...(l.urls !== undefined ? { urls: l.urls } : {}) };
    });
    const out = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: MediaType.DockerConfig, size: m.config.size, digest: m.config.digest },
      layers,
    };
    return [Buffer.from(JSON.stringify(out)), MediaType.DockerManifest];
  }
  const out: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: m.config.digest, size: m.config.size },
    layers: m.layers.map((l) => ({ ...l, mediaType: ociLayerMediaType(l.mediaType) })),
  };
  return [Buffer.from(JSON.stringify(out)), MediaType.OciManifest];
}

function convertIndex(index: ImageIndex, body: Buffer, d: Descriptor, children: Descriptor[], format: 'oci' | 'docker' | undefined): [Buffer, string] {
  const current = index.mediaType ?? d.mediaType;
  const unchanged = children.every((c, i) => c.digest === index.manifests[i]?.digest);
  if (unchanged && (format === undefined || (format === 'docker') === (current === MediaType.DockerManifestList))) return [body, current];
  const docker = format === 'docker' || (format === undefined && current === MediaType.DockerManifestList);
  const mediaType = docker ? MediaType.DockerManifestList : MediaType.OciIndex;
  const manifests = children.map((c) => ({
    mediaType: c.mediaType,
    digest: c.digest,
    size: c.size,
    ...(c.platform !== undefined ? { platform: c.platform } : {}),
    ...(!docker && c.annotations !== undefined ? { annotations: c.annotations } : {}),
  }));
  const out = { schemaVersion: 2, mediaType, manifests, ...(!docker && index.annotations !== undefined ? { annotations: index.annotations } : {}) };
  return [Buffer.from(JSON.stringify(out)), mediaType];
}
