import {
  type Descriptor,
  type ImageIndex,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  TsbuildError,
  type Platform,
  formatReference,
  isIndexMediaType,
  normalisePlatform,
  parseReference,
  samePlatformAs,
} from '@tsbuild/oci';
import { type ListFormat, type Store, emptyManifestList, readManifestList, withEntry, writeManifestList } from '@tsbuild/store';
import type { RegistryClient } from '@tsbuild/registry-client';
import { type BuildEvent, type BuildOptions, type BuildResult, type InflightSteps, baseImages, buildParsed, loadDockerfile } from './build.js';

export interface MultiPlatformOptions extends Omit<BuildOptions, 'platform' | 'inflight' | 'unnamed' | 'onEvent'> {
  /** The platforms to build for, each once (normalised; duplicates are one). */
  platforms: Platform[];
  /**
   * The list each platform's image goes into: created when missing, amended when it is a list
   * (each platform's previous entry replaced). Default: the first of `tags`; with neither, the
   * list is stored without a name.
   */
  manifest?: string;
  /** How many platforms build at once (default: all of them). */
  jobs?: number;
  onEvent?: (e: BuildEvent, platform: Platform) => void;
}

export interface MultiPlatformResult {
  /** The list's descriptor: its digest is what `build` prints. */
  list: Descriptor;
  /** The names pointing at the list. */
  names: string[];
  images: { platform: Platform; result: BuildResult }[];
}

/**
 * Builds a Dockerfile for several platforms into one manifest list, as `buildah build --platform
 * a,b --manifest NAME` does: one independent build per platform (its own stages, working
 * containers and TARGET* ARGs) sharing the store, the snapshotter and the build cache, `jobs`
 * at a time. Steps that two platforms' builds share (a stage built for the build platform) run
 * once: the builds share their in-progress cache keys (BuildOptions.inflight). The images are
 * stored unnamed and the list is written only when every platform succeeded, so a failed build
 * names nothing and leaves an existing list as it was.
 */
export async function buildPlatforms(options: MultiPlatformOptions): Promise<MultiPlatformResult> {
  const platforms = uniquePlatforms(options.platforms);
  if (platforms.length === 0) throw new InvalidArgumentError('no platform to build for');
  const jobs = options.jobs ?? platforms.length;
  if (!Number.isSafeInteger(jobs) || jobs < 1) throw new InvalidArgumentError(`--jobs ${jobs}: want a whole number of at least 1`);
  const { store } = options;
  const names = [...new Set([...(options.manifest !== undefined ? [options.manifest] : []), ...(options.tags ?? [])].map((t) => formatReference(parseReference(t))))];
  const common: Partial<MultiPlatformOptions> = { ...options, tags: [] };
  for (const k of ['platforms', 'manifest', 'jobs', 'onEvent'] as const) delete common[k];
  const { opts, parsed } = await loadDockerfile(common as BuildOptions);
  // Refused before anything is built: a name that is an image when --manifest asks for a list.
  if (options.manifest !== undefined) await existingList(store, names[0]!, true);
  const inflight: InflightSteps = new Map();
  return store.withLock('shared', async () => {
    const results: ({ platform: Platform; result: BuildResult } | undefined)[] = [];
    let failure: { reason: unknown } | undefined;
    let next = 0;
    const worker = async () => {
      while (next < platforms.length && failure === undefined) {
        const i = next++;
        const platform = platforms[i]!;
        try {
          const { onEvent } = options;
          const result = await buildParsed(
            { ...opts, platform, inflight, unnamed: true, ...(onEvent ? { onEvent: (e: BuildEvent) => onEvent(e, platform) } : {}) },
            parsed,
          );
          results[i] = { platform, result };
        } catch (e) {
          // The first failure is the build's; the platforms not started yet are not built.
          failure ??= { reason: e };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, platforms.length) }, worker));
    if (failure) throw failure.reason;
    const images = results.map((r) => r!);
    const format: ListFormat = options.format === 'docker' ? 'docker' : 'oci';
    let list: ImageIndex = (names.length > 0 ? await existingList(store, names[0]!, options.manifest !== undefined) : undefined) ?? emptyManifestList(format);
    for (const { platform, result } of images) list = withEntry(list, { ...result.manifest, platform }, { replacePlatform: true });
    let descriptor: Descriptor;
    if (names.length === 0) {
      descriptor = await store.putJSON(list, list.mediaType ?? format);
      await store.addImage(descriptor);
    } else {
      descriptor = await writeManifestList(store, names[0]!, list);
      for (const n of names.slice(1)) await store.setName(n, descriptor);
    }
    return { list: descriptor, names, images };
  });
}

/**
 * The list `name` points at, to amend; undefined when the name is free, or names an image that
 * `-t` replaces. With `--manifest` (strict), a name that is an image is refused, as buildah
 * refuses to add to something that is not a list.
 */
async function existingList(store: Store, name: string, strict: boolean): Promise<ImageIndex | undefined> {
  let descriptor: Descriptor;
  try {
    descriptor = (await store.resolve(name)).descriptor;
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
  if (!isIndexMediaType(descriptor.mediaType)) {
    if (strict) throw new FailedPreconditionError(`--manifest ${name}: it names an image, not a manifest list`);
    return undefined;
  }
  return (await readManifestList(store, name)).list;
}

function uniquePlatforms(list: Platform[]): Platform[] {
  const out: Platform[] = [];
  for (const p of list.map(normalisePlatform)) if (!out.some((q) => samePlatformAs(p, q))) out.push(p);
  return out;
}

/**
 * --all-platforms: the platforms every base image of the build offers, as buildah computes them
 * (platformsForBaseImages): the intersection over the bases that are manifest lists, each read
 * from the store, or from its registry (see listPlatforms). A base that is one image does not
 * narrow the set; when no base is a list, there is nothing to build for.
 */
export async function allPlatforms(options: BuildOptions & { registry?: () => Promise<RegistryClient> }): Promise<Platform[]> {
  const { opts, parsed } = await loadDockerfile(options);
  let common: Platform[] | undefined;
  for (const name of baseImages(opts, parsed)) {
    const offered = await listPlatforms(opts.store, name, options);
    if (offered === undefined) continue;
    common = common === undefined ? offered : common.filter((p) => offered.some((q) => samePlatformAs(p, q)));
  }
  if (common === undefined) throw new NotFoundError(`--all-platforms: no base image of ${parsed.file} is a manifest list, so there is no set of platforms to build for`);
  if (common.length === 0) throw new NotFoundError(`--all-platforms: the base images of ${parsed.file} have no platform in common`);
  return common;
}

/**
 * The platforms of the list `name`, or undefined when it is one image. A list in the store (made
 * by `manifest create` or a build) is read there; otherwise the registry is asked, as buildah's
 * platformsForBaseImages inspects `docker://NAME` (a pull for a platform keeps only that
 * platform's image under the name), unless --pull=never. A registry that cannot answer leaves a
 * stored single image as one image.
 */
async function listPlatforms(store: Store, name: string, options: BuildOptions & { registry?: () => Promise<RegistryClient> }): Promise<Platform[] | undefined> {
  let index: ImageIndex | undefined;
  let stored = false;
  try {
    const { descriptor } = await store.resolve(name);
    stored = true;
    if (isIndexMediaType(descriptor.mediaType)) index = await store.readJSON<ImageIndex>(descriptor.digest);
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  if (index === undefined) {
    if (options.pull === 'never' || !options.registry) {
      if (stored) return undefined;
      throw new NotFoundError(`--all-platforms: base image ${name} is not in the local store${options.pull === 'never' ? ' (and --pull=never)' : ''}`);
    }
    let top;
    try {
      top = await (await options.registry()).getManifest(parseReference(name));
    } catch (e) {
      if (stored) return undefined;
      throw withWhat(e, name);
    }
    if (!isIndexMediaType(top.descriptor.mediaType)) return undefined;
    index = JSON.parse(top.body.toString('utf8')) as ImageIndex;
  }
  const out: Platform[] = [];
  for (const m of Array.isArray(index.manifests) ? index.manifests : []) {
    // BuildKit's attestation entries (unknown/unknown) are no platform to build for.
    if (m.platform === undefined || m.platform.os === 'unknown') continue;
    out.push(normalisePlatform(m.platform));
  }
  return uniquePlatforms(out);
}

function withWhat(e: unknown, name: string): unknown {
  if (e instanceof TsbuildError) return new (e.constructor as typeof TsbuildError)(`--all-platforms: base image ${name}: ${e.message}`, { cause: e });
  return e;
}
