import {
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageManifest,
  InvalidArgumentError,
  MediaType,
  layerCompression,
  layerMediaType,
  sha256Of,
} from '@tsbuild/oci';
import type { Store } from './store.js';

export interface WrittenImage {
  descriptor: Descriptor;
  configDigest: Digest;
}

/**
 * The one place that writes an image's config and manifest (a build, a `commit`, an import). The
 * config's `created` is the time of its last history entry, so a state rebuilt entirely from the
 * cache is byte-identical and keeps its ID. With `format: 'docker'` the layers take Docker's media
 * types, which exist for gzip and plain tar only.
 */
export async function writeImage(
  store: Store,
  config: ImageConfig,
  layers: Descriptor[],
  opts: { format: 'oci' | 'docker'; annotations?: Record<string, string> },
): Promise<WrittenImage> {
  const c: ImageConfig = structuredClone(config);
  const last = c.history?.at(-1)?.created;
  if (last !== undefined) c.created = last;
  const docker = opts.format === 'docker';
  // The config's descriptor is known before it is written, so config and manifest are written
  // side by side: their fsyncs overlap. Nothing names the manifest until the caller records it,
  // once both are in the store.
  const configBytes = Buffer.from(JSON.stringify(c), 'utf8');
  const configDesc: Descriptor = { mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig, digest: sha256Of(configBytes), size: configBytes.length };
  const ls = docker
    ? layers.map((l) => {
        const kind = layerCompression(l.mediaType);
        if (kind !== 'gzip' && kind !== 'none') throw new InvalidArgumentError(`--format docker needs gzip or plain tar layers; ${l.digest} is ${l.mediaType}`);
        return { ...l, mediaType: layerMediaType('docker', kind) };
      })
    : layers;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: docker ? MediaType.DockerManifest : MediaType.OciManifest,
    config: configDesc,
    layers: ls,
    ...(opts.annotations && !docker ? { annotations: opts.annotations } : {}),
  };
  const [, descriptor] = await Promise.all([store.content.writeBuffer(configBytes, configDesc.digest), store.putJSON(manifest, manifest.mediaType!)]);
  return { descriptor, configDigest: configDesc.digest };
}
