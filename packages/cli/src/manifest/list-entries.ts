import { Flags } from '../cli-kit.js';
import {
  InvalidArgumentError,
  NotFoundError,
  indexEntry,
  isDigest,
  isIndexMediaType,
  parseReference,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type Platform,
} from '@tsbuild/oci';
import { configPlatform, pickPlatform, type Store } from '@tsbuild/store';
import type { RegistryClient } from '@tsbuild/registry-client';

/** buildah's `manifest add`/`annotate` flags that override an entry's platform, and its annotations. */
export const platformFlags = {
  os: Flags.string({ description: 'override the OS of the image' }),
  arch: Flags.string({ description: 'override the architecture of the image' }),
  variant: Flags.string({ description: 'override the variant of the image' }),
  features: Flags.string({ description: 'override the features of the image', multiple: true }),
  'os-version': Flags.string({ description: 'override the OS version of the image' }),
  'os-features': Flags.string({ description: 'override the OS features of the image', multiple: true }),
  annotation: Flags.string({ description: 'set an annotation KEY=VALUE on the entry', multiple: true }),
};

export interface PlatformFlagValues {
  os?: string;
  arch?: string;
  variant?: string;
  features?: string[];
  'os-version'?: string;
  'os-features'?: string[];
  annotation?: string[];
}

// GOOS/GOARCH/variant words: what the image-spec's platform fields hold.
const PLATFORM_WORD = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Checks every flag before anything is written: one line naming the flag and its value.
 */
export function checkPlatformFlags(f: PlatformFlagValues): void {
  for (const name of ['os', 'arch', 'variant'] as const) {
    const v = f[name];
    if (v !== undefined && !PLATFORM_WORD.test(v)) throw new InvalidArgumentError(`invalid --${name} "${v}": want a single word such as ${name === 'os' ? 'linux' : name === 'arch' ? 'arm64' : 'v8'}`);
  }
  if (f['os-version'] !== undefined && (f['os-version'] === '' || /\s/.test(f['os-version']))) throw new InvalidArgumentError(`invalid --os-version "${f['os-version']}"`);
  for (const name of ['features', 'os-features'] as const) {
    for (const v of f[name] ?? []) if (!PLATFORM_WORD.test(v)) throw new InvalidArgumentError(`invalid --${name} "${v}": want a single word`);
  }
  annotations(f.annotation);
}

/** `--annotation K=V…` as a record; a value without `=` or with an empty key is refused. */
export function annotations(values: string[] | undefined): Record<string, string> | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const a of values) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`invalid --annotation "${a}": want KEY=VALUE`);
    out[a.slice(0, eq)] = a.slice(eq + 1);
  }
  return out;
}

/** `entry` with the flags' platform fields and annotations applied over what it had. */
export function applyPlatformFlags(entry: Descriptor, f: PlatformFlagValues): Descriptor {
  const p: Platform = { ...(entry.platform ?? { os: '', architecture: '' }) };
  if (f.os !== undefined) p.os = f.os;
  if (f.arch !== undefined) p.architecture = f.arch;
  if (f.variant !== undefined) p.variant = f.variant;
  if (f['os-version'] !== undefined) p['os.version'] = f['os-version'];
  if (f['os-features'] !== undefined && f['os-features'].length > 0) p['os.features'] = f['os-features'];
  // image-spec: `features` is reserved; Docker manifest lists carry it, as buildah sets it.
  if (f.features !== undefined && f.features.length > 0) (p as Platform & { features?: string[] }).features = f.features;
  const extra = annotations(f.annotation);
  const out: Descriptor = { ...entry };
  if (p.os !== '' || p.architecture !== '') out.platform = p;
  if (extra !== undefined) out.annotations = { ...(entry.annotations ?? {}), ...extra };
  return out;
}

export const DOCKER_TRANSPORT = 'docker://';

/**
 * The entries IMAGE gives a list: a local image (its manifest, with its config's platform), a
 * local list (with `all` every entry, else this machine's), or `docker://REF` read from the
 * registry without pulling (then `remote` is true: the manifests are not in the store).
 */
export async function entriesFor(
  store: Store,
  image: string,
  opts: { all?: boolean; client?: () => Promise<RegistryClient> },
): Promise<{ entries: Descriptor[]; remote: boolean; source: string }> {
  if (image.startsWith(DOCKER_TRANSPORT)) {
    if (opts.client === undefined) throw new InvalidArgumentError(`${image}: a registry reference is not possible here`);
    const ref = parseReference(image.slice(DOCKER_TRANSPORT.length));
    const { remoteListEntries } = await import('@tsbuild/registry-client');
    const entries = await remoteListEntries(await opts.client(), ref, { ...(opts.all !== undefined ? { all: opts.all } : {}) });
    return { entries, remote: true, source: image };
  }
  const { descriptor } = await store.resolve(image);
  if (isIndexMediaType(descriptor.mediaType)) {
    const index = await store.readJSON<ImageIndex>(descriptor.digest);
    if (opts.all === true) return { entries: index.manifests.map(indexEntry), remote: false, source: image };
    const one = pickPlatform(index.manifests);
    if (one === undefined) throw new NotFoundError(`manifest list ${image} has no images`);
    return { entries: [indexEntry(one)], remote: false, source: image };
  }
  const config = await store.image(descriptor).config();
  return { entries: [{ mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size, platform: configPlatform(config) }], remote: false, source: image };
}

/** The entry of `list` that IMAGE-OR-DIGEST names: a digest of an entry, or a local image in it. */
export async function findEntry(store: Store, list: ImageIndex, listName: string, imageOrDigest: string): Promise<Descriptor> {
  let digest: Digest;
  if (isDigest(imageOrDigest)) digest = imageOrDigest;
  else {
    const { descriptor } = await store.resolve(imageOrDigest).catch((e: unknown) => {
      if (e instanceof NotFoundError) throw new NotFoundError(`${imageOrDigest} is neither a digest nor an image in the store`);
      throw e;
    });
    digest = descriptor.digest;
  }
  const entry = list.manifests.find((m) => m.digest === digest);
  if (entry === undefined) throw new NotFoundError(`manifest list ${listName} has no entry ${digest}${digest === imageOrDigest ? '' : ` (${imageOrDigest})`}`);
  return entry;
}
