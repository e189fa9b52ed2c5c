import { DataLossError, type Descriptor, type ImageIndex, MediaType, NotFoundError, type Platform, isIndexMediaType } from '@tsbuild/oci';
import type { Store } from './store.js';

/**
 * Manifest lists (OCI image index, Docker manifest list) kept under a name, as buildah keeps its
 * `manifest create` lists: the name points at the index blob, whose entries are image manifests,
 * each with its platform. An entry's manifest may be in the store (an image built or pulled here)
 * or only in a registry (`manifest add docker://…`): the list records its descriptor either way.
 * The one place that writes a list (writeManifestList); the build's `--manifest` and the
 * `manifest` verbs go through it.
 */
export type ListFormat = 'oci' | 'docker';

export function listMediaType(format: ListFormat): string {
  return format === 'oci' ? MediaType.OciIndex : MediaType.DockerManifestList;
}

/** An empty list of this format. */
export function emptyManifestList(format: ListFormat = 'oci'): ImageIndex {
  return { schemaVersion: 2, mediaType: listMediaType(format), manifests: [] };
}

/**
 * `list` with `entry` in it: an entry of the same digest, or (with `replacePlatform`, as a build
 * for a platform replaces that platform's previous image) of the same platform, is replaced in
 * place; otherwise the entry is appended. `list` itself is not changed.
 */
export function withEntry(list: ImageIndex, entry: Descriptor, opts: { replacePlatform?: boolean } = {}): ImageIndex {
  const same = (d: Descriptor): boolean => d.digest === entry.digest || (opts.replacePlatform === true && d.platform !== undefined && entry.platform !== undefined && samePlatform(d.platform, entry.platform));
  const at = list.manifests.findIndex(same);
  const manifests = at < 0 ? [...list.manifests, entry] : list.manifests.map((d, i) => (i === at ? entry : d)).filter((d, i) => i <= at || !same(d));
  return { ...list, manifests };
}

export function samePlatform(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '') && (a['os.version'] ?? '') === (b['os.version'] ?? '');
}

/** Stores the list's JSON and points `name` at it; returns the list's descriptor. */
export async function writeManifestList(store: Store, name: string, list: ImageIndex): Promise<Descriptor> {
  const mediaType = list.mediaType ?? MediaType.OciIndex;
  if (!isIndexMediaType(mediaType)) throw new DataLossError(`manifest list ${name}: media type ${mediaType} is not an index`);
  const desc = await store.putJSON(list, mediaType);
  await store.setName(name, desc);
  return desc;
}

/** The list `name` points at; NotFoundError when the name is missing or names an image. */
export async function readManifestList(store: Store, name: string): Promise<{ descriptor: Descriptor; list: ImageIndex }> {
  const { descriptor } = await store.resolve(name);
  if (!isIndexMediaType(descriptor.mediaType)) throw new NotFoundError(`${name} is an image, not a manifest list`);
  const list = await store.readJSON<ImageIndex>(descriptor.digest);
  if (list === null || typeof list !== 'object' || !Array.isArray(list.manifests)) throw new DataLossError(`manifest list ${name} (${descriptor.digest}) has no manifests array`);
  return { descriptor, list };
}
