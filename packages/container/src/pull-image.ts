import {
  CancelledError,
  type Descriptor,
  type ImageIndex,
  NotFoundError,
  type Platform,
  TsbuildError,
  UnavailableError,
  formatPlatform,
  hostPlatform,
  isIndexMediaType,
  parseReference,
  samePlatformAs,
} from '@tsbuild/oci';
import { type Store, configPlatform } from '@tsbuild/store';
import type { RegistryClient } from '@tsbuild/registry-client';

/** buildah's --pull: missing (pull when the store lacks the image), always, never. */
export type PullPolicy = 'missing' | 'always' | 'never';

/**
 * The manifest descriptor of the image `name`: from the store, or pulled as `pull` says (`FROM`,
 * `COPY --from`, `tsbuild from`, `copy --from`). Errors begin with `what`, the thing that wanted
 * the image; a failed pull keeps its kind (see registryFailure).
 *
 * With `platform` (a build for several platforms, `from --platform`), the image must be that
 * platform's, as podman's libimage looks a name up for a platform: a name pointing at a manifest
 * list gives the list's entry for the platform (an entry whose manifest the store lacks counts as
 * missing and is pulled); a name pointing at one image of another platform counts as missing too,
 * and with --pull=never is one line naming both platforms. A list without the platform is one
 * line naming what it offers, not a pull: a list is made here, by `manifest create` or a build.
 * `nameForeign: false` (builds): an image pulled for a platform other than the host's is stored
 * without taking the name.
 */
export async function storedOrPulled(
  store: Store,
  name: string,
  pull: PullPolicy,
  registry: (() => Promise<RegistryClient>) | undefined,
  what: string,
  platform?: Platform,
  opts: { nameForeign?: boolean } = {},
): Promise<Descriptor> {
  if (pull !== 'always') {
    let descriptor: Descriptor | undefined;
    try {
      descriptor = (await store.resolve(name)).descriptor;
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      if (pull === 'never') throw new NotFoundError(`${what}: image not known in the local store (and --pull=never)`);
    }
    if (descriptor !== undefined && platform === undefined) return descriptor;
    if (descriptor !== undefined && platform !== undefined) {
      const local = await forPlatform(store, name, descriptor, platform, what);
      if (local.descriptor) return local.descriptor;
      if (pull === 'never') throw new NotFoundError(`${what}: the local ${name} is ${local.found}, not ${formatPlatform(platform)} (and --pull=never)`);
    }
  }
  let ref;
  try {
    ref = parseReference(name);
  } catch {
    throw new NotFoundError(`${what}: image not known in the local store, and "${name}" is not a reference to pull`);
  }
  if (!registry) throw new NotFoundError(`${what}: image not known in the local store`);
  const rc = await import('@tsbuild/registry-client');
  try {
    // A build for another platform leaves the name to the host's image (nameForeign false): else
    // after `build --platform linux/amd64,linux/arm64` the name would hold whichever platform was
    // pulled last, and the next build without --platform would start from an arm64 base.
    const foreign = platform !== undefined && !samePlatformAs(platform, hostPlatform());
    return (await rc.pull(await registry(), store, ref, { ...(platform !== undefined ? { platform } : {}), ...(foreign && opts.nameForeign === false ? { name: false } : {}) })).descriptor;
  } catch (e) {
    throw registryFailure(e, `${what}: not in the local store, and pulling it failed: ${(e as Error).message}`);
  }
}

/**
 * The stored image of `platform` that `descriptor` (what `name` points at) gives: a list's entry
 * for it whose manifest is stored, or the image itself when its config is that platform's.
 * Otherwise `found` says what the store has instead (for the --pull=never error).
 */
async function forPlatform(store: Store, name: string, descriptor: Descriptor, platform: Platform, what: string): Promise<{ descriptor: Descriptor; found?: undefined } | { descriptor?: undefined; found: string }> {
  if (isIndexMediaType(descriptor.mediaType)) {
    const list = await store.readJSON<ImageIndex>(descriptor.digest);
    const manifests = Array.isArray(list.manifests) ? list.manifests : [];
    const { selectPlatform } = await import('@tsbuild/registry-client');
    const entry = selectPlatform(manifests, platform);
    if (entry === undefined) {
      const offered = manifests.filter((m) => m.platform !== undefined).map((m) => formatPlatform(m.platform!));
      throw new NotFoundError(`${what}: manifest list ${name} has no image for platform ${formatPlatform(platform)} (it has ${offered.join(', ') || 'no platforms'})`);
    }
    if (await store.content.info(entry.digest)) return { descriptor: entry };
    return { found: `a list whose ${formatPlatform(platform)} image is not stored` };
  }
  const own = configPlatform(await store.image(descriptor).config());
  if (samePlatformAs(own, platform)) return { descriptor };
  return { found: `a ${formatPlatform(own)} image` };
}

/**
 * A registry operation's failure told as `message`, its kind kept; an untyped one (a refused
 * connection) is the registry being unavailable. A cancellation comes back as it is.
 */
export function registryFailure(e: unknown, message: string): unknown {
  if (e instanceof CancelledError) return e;
  const Kind = (e instanceof TsbuildError ? e.constructor : UnavailableError) as new (message: string, options?: { cause?: unknown }) => TsbuildError;
  return new Kind(message, { cause: e });
}
