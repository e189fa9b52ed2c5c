import {
  DataLossError,
  NotFoundError,
  formatPlatform,
  formatReference,
  hostPlatform,
  indexEntry,
  isIndexMediaType,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Reference,
} from '@tsbuild/oci';
import { configPlatform } from '@tsbuild/store';
import { selectPlatform } from './platform-select.js';
import type { RegistryClient } from './registry-client.js';

/**
 * The list entries for a reference in a registry, read without pulling any image (buildah's
 * `manifest add docker://REF`): for an image manifest, its descriptor (digest and size as the
 * registry serves them) with the platform of its config; for an index, with `all` every entry
 * it has, else the one for `platform` (default this machine's).
 */
export async function remoteListEntries(client: RegistryClient, ref: Reference, opts: { all?: boolean; platform?: Platform } = {}): Promise<Descriptor[]> {
  const top = await client.getManifest(ref);
  if (!isIndexMediaType(top.descriptor.mediaType)) return [await withPlatform(client, ref, top.descriptor, top.body)];
  const index = parseJSON<ImageIndex>(top.body, `index ${formatReference(ref)}`);
  if (!Array.isArray(index.manifests)) throw new DataLossError(`index ${formatReference(ref)} has no manifests list`);
  if (opts.all === true) return index.manifests.map(indexEntry);
  const want = opts.platform ?? hostPlatform();
  const child = selectPlatform(index.manifests, want);
  if (child === undefined) throw new NotFoundError(`${formatReference(ref)}: no image for platform ${formatPlatform(want)} in its index`);
  return [indexEntry(child)];
}

async function withPlatform(client: RegistryClient, ref: Reference, d: Descriptor, body: Buffer): Promise<Descriptor> {
  const where = `manifest ${formatReference(ref)}`;
  const m = parseJSON<ImageManifest>(body, where);
  if (typeof m.config !== 'object' || m.config === null) throw new DataLossError(`${where} has no config`);
  const config = parseJSON<ImageConfig>(await client.getConfig(ref, m.config), `config of ${formatReference(ref)}`);
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, platform: configPlatform(config) };
}

function parseJSON<T>(body: Buffer, what: string): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new DataLossError(`${what} is not valid JSON`);
  }
}
