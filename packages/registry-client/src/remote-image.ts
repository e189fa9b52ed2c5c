import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import {
  DataLossError,
  NotFoundError,
  formatPlatform,
  formatReference,
  hostPlatform,
  isIndexMediaType,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Reference,
} from '@tsbuild/oci';
import { decompressed } from '@tsbuild/snapshotter';
import type { Image, Layer } from '@tsbuild/store';
import { selectPlatform } from './platform-select.js';
import type { RegistryClient } from './registry-client.js';

/**
 * An image read straight from a registry, with the store's `Image` interface: manifests and the
 * config are fetched (and verified) up front, layers are streamed from the registry each time
 * they are opened. Nothing is written anywhere.
 */
export async function remoteImage(client: RegistryClient, ref: Reference, opts: { platform?: Platform } = {}): Promise<Image> {
  let top = await client.getManifest(ref);
  if (isIndexMediaType(top.descriptor.mediaType)) {
    const index = parse<ImageIndex>(top.body, `index ${formatReference(ref)}`);
    const want = opts.platform ?? hostPlatform();
    const child = selectPlatform(index.manifests ?? [], want);
    if (child === undefined) throw new NotFoundError(`${formatReference(ref)}: no image for platform ${formatPlatform(want)}`);
    top = await client.getManifest(ref, child);
  }
  const descriptor: Descriptor = top.descriptor;
  const manifest = parse<ImageManifest>(top.body, `manifest ${formatReference(ref)}`);
  if (typeof manifest.config !== 'object' || !Array.isArray(manifest.layers)) {
    throw new DataLossError(`manifest ${descriptor.digest} of ${formatReference(ref)} has no config or layers`);
  }
  const config = parse<ImageConfig>(Buffer.from(await text(await client.getBlob(ref, manifest.config))), `config ${manifest.config.digest} of ${formatReference(ref)}`);
  const diffIDs = config.rootfs?.diff_ids ?? [];
  if (diffIDs.length !== manifest.layers.length) {
    throw new DataLossError(`${formatReference(ref)}: manifest lists ${manifest.layers.length} layers but the config lists ${diffIDs.length} diff_ids`);
  }
  const layers: Layer[] = manifest.layers.map((l, i) => ({
    digest: l.digest,
    diffID: diffIDs[i] as Digest,
    size: l.size,
    mediaType: l.mediaType,
    compressed: () => client.getBlob(ref, l),
    uncompressed: async () => Readable.from(decompressed(await client.getBlob(ref, l)), { objectMode: false }),
  }));
  return {
    descriptor,
    manifest: () => Promise.resolve(manifest),
    config: () => Promise.resolve(config),
    configDescriptor: () => Promise.resolve(manifest.config),
    layers: () => Promise.resolve(layers),
  };
}

function parse<T>(body: Buffer, what: string): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new DataLossError(`${what} is not valid JSON`);
  }
}
