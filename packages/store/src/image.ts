import { pipeline, type Readable } from 'node:stream';
import {
  DataLossError,
  FailedPreconditionError,
  hostPlatform,
  isIndexMediaType,
  layerCompression,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  zlib,
} from '@tsbuild/oci';
import type { ContentStore } from './content-store.js';
import { createZstdDecompress } from './zstd-stream.js';

/**
 * An image in the store, read lazily (after go-containerregistry's v1.Image): nothing is read
 * until asked. `descriptor` is what a name points at; when that is an index, the manifest for
 * this machine's platform is used (the first one if none matches).
 */
export interface Image {
  descriptor: Descriptor;
  manifest(): Promise<ImageManifest>;
  config(): Promise<ImageConfig>;
  configDescriptor(): Promise<Descriptor>;
  layers(): Promise<Layer[]>;
}

/**
 * One layer of an image. `digest`/`size`/`mediaType` describe the blob as stored (usually
 * gzip); `diffID` is the sha256 of the uncompressed tar, as the config's rootfs.diff_ids lists it.
 */
export interface Layer {
  digest: Digest;
  diffID: Digest;
  size: number;
  mediaType: string;
  compressed(): Promise<Readable>;
  /** The layer tar: decompressed for gzip and zstd layers, the blob itself for plain tar layers. */
  uncompressed(): Promise<Readable>;
}

export type JSONReader = <T>(d: Digest) => Promise<T>;

export function openImage(content: ContentStore, readJSON: JSONReader, descriptor: Descriptor): Image {
  let manifestP: Promise<ImageManifest> | undefined;
  let configP: Promise<ImageConfig> | undefined;
  const manifest = (): Promise<ImageManifest> => (manifestP ??= loadManifest(readJSON, descriptor));
  const config = (): Promise<ImageConfig> => (configP ??= manifest().then((m) => readJSON<ImageConfig>(m.config.digest)));
  return {
    descriptor,
    manifest,
    config,
    configDescriptor: async () => (await manifest()).config,
    layers: async () => {
      const [m, c] = await Promise.all([manifest(), config()]);
      const diffIDs = c.rootfs?.diff_ids ?? [];
      if (diffIDs.length !== m.layers.length) {
        throw new DataLossError(
          `image ${descriptor.digest}: manifest lists ${m.layers.length} layers but config ${m.config.digest} lists ${diffIDs.length} diff_ids`,
        );
      }
      return m.layers.map((l, i) => storedLayer(content, l, diffIDs[i] as Digest));
    },
  };
}

export function storedLayer(content: ContentStore, l: Descriptor, diffID: Digest): Layer {
  return {
    digest: l.digest,
    diffID,
    size: l.size,
    mediaType: l.mediaType,
    compressed: () => content.read(l.digest),
    uncompressed: async () => {
      const compression = layerCompression(l.mediaType);
      const src = await content.read(l.digest);
      if (compression === 'none') return src;
      if (compression === 'gzip') {
        // The callback form returns the last stream and destroys every stream on an error, so a
        // read error surfaces on the returned stream and an early destroy stops the read.
        return pipeline(src, zlib().createGunzip(), () => undefined);
      }
      if (compression === 'zstd') return pipeline(src, createZstdDecompress(), () => undefined);
      src.destroy();
      throw new FailedPreconditionError(`layer ${l.digest}: media type ${l.mediaType} is not supported here (need gzip, zstd or plain tar)`);
    },
  };
}

async function loadManifest(readJSON: JSONReader, d: Descriptor): Promise<ImageManifest> {
  const body = await readJSON<ImageManifest | ImageIndex>(d.digest);
  if (isIndexMediaType(d.mediaType) || ('manifests' in body && Array.isArray(body.manifests))) {
    const child = pickPlatform((body as ImageIndex).manifests);
    if (child === undefined) throw new DataLossError(`image index ${d.digest} lists no manifests`);
    return loadManifest(readJSON, child);
  }
  const m = body as ImageManifest;
  if (typeof m.config !== 'object' || !Array.isArray(m.layers)) {
    throw new DataLossError(`blob ${d.digest} is not an image manifest (no config or layers)`);
  }
  return m;
}

/** The manifest for this machine's os/architecture, else the first one. */
export function pickPlatform(manifests: Descriptor[]): Descriptor | undefined {
  const host = hostPlatform();
  return (
    manifests.find((m) => m.platform?.os === host.os && m.platform.architecture === host.architecture) ?? manifests[0]
  );
}
