import { DataLossError, type Descriptor, type Digest, type ImageConfig, type ImageIndex, MediaType, NotFoundError, type Platform, isIndexMediaType } from '@tsbuild/oci';
import type { Store } from './store.js';
import { type RemoteSources, readListSources, writeListSources } from './list-sources.js';

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

/**
 * Stores the list's JSON and points `name` at it; returns the list's descriptor. `remote` names
 * the entries added from a registry (their manifests are not in the store; see list-sources.ts):
 * only those still in the list are recorded, before the name is set, so a crash leaves at most
 * an unnamed list that gc removes.
 */
export async function writeManifestList(store: Store, name: string, list: ImageIndex, opts: { remote?: RemoteSources } = {}): Promise<Descriptor> {
  const mediaType = list.mediaType ?? MediaType.OciIndex;
  if (!isIndexMediaType(mediaType)) throw new DataLossError(`manifest list ${name}: media type ${mediaType} is not an index`);
  const desc = await store.putJSON(list, mediaType);
  if (opts.remote !== undefined) {
    const inList = new Set(list.manifests.map((m) => m.digest));
    await writeListSources(store.root, desc.digest, new Map([...opts.remote].filter(([d]) => inList.has(d))));
  }
  // The list's previous version is not kept as an untagged image: a list is changed in place.
  await store.setName(name, desc, { keepReplaced: false });
  return desc;
}

/**
 * The list `name` points at, and its entries that were added from a registry (`remote`: digest →
 * `docker://REF`). NotFoundError when the name is missing or names an image.
 */
export async function readManifestList(store: Store, name: string): Promise<{ descriptor: Descriptor; list: ImageIndex; remote: Map<Digest, string> }> {
  const { descriptor } = await store.resolve(name).catch((e: unknown) => {
    if (e instanceof NotFoundError) throw new NotFoundError(`manifest list ${name} is not known`);
    throw e;
  });
  if (!isIndexMediaType(descriptor.mediaType)) throw new NotFoundError(`${name} is an image, not a manifest list`);
  const list = await store.readJSON<ImageIndex>(descriptor.digest);
  if (list === null || typeof list !== 'object' || !Array.isArray(list.manifests)) throw new DataLossError(`manifest list ${name} (${descriptor.digest}) has no manifests array`);
  return { descriptor, list, remote: await readListSources(store.root, descriptor.digest) };
}

/** `list` without the entry of digest `digest`; NotFoundError naming the list when it has none. */
export function withoutEntry(list: ImageIndex, digest: Digest, listName: string): ImageIndex {
  if (!list.manifests.some((m) => m.digest === digest)) throw new NotFoundError(`manifest list ${listName} has no entry ${digest}`);
  return { ...list, manifests: list.manifests.filter((m) => m.digest !== digest) };
}

/**
 * The platform an image's entry in a list gets: what its config states (image-spec config.md:
 * os, architecture, variant, os.version, os.features), unless the caller overrides it.
 */
export function configPlatform(c: ImageConfig): Platform {
  const p: Platform = { architecture: typeof c.architecture === 'string' ? c.architecture : '', os: typeof c.os === 'string' ? c.os : '' };
  if (typeof c.variant === 'string' && c.variant !== '') p.variant = c.variant;
  if (typeof c['os.version'] === 'string' && c['os.version'] !== '') p['os.version'] = c['os.version'];
  if (Array.isArray(c['os.features']) && c['os.features'].length > 0) p['os.features'] = c['os.features'].filter((f): f is string => typeof f === 'string');
  return p;
}
