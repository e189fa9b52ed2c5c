import { type Descriptor, type Digest, InvalidArgumentError, NotFoundError, digestHex, parseReference, type Reference } from '@tsbuild/oci';
import type { CompressImageOptions, Store } from '@tsbuild/store';
import type { RegistryClient } from '@tsbuild/registry-client';

/**
 * The registry build cache (`--cache-to` / `--cache-from`): a repository whose tags are cache
 * keys. The state after an instruction is already an ordinary image manifest in the store (see
 * BuildCache), so it travels as one: `REPO:<hex of the cache key>` names the manifest of the
 * state that key produced. The full 64 hex digits fit, as the distribution spec allows tags of
 * up to 128 characters. A key is a hash of everything that decides the step's result, so any
 * machine computing the same key may use the manifest instead of running the step.
 */

/** `REPO` of `--cache-to REPO` / `--cache-from REPO`: a repository, without tag or digest. */
export function cacheRepository(input: string, flag: string): Reference {
  let ref: Reference;
  try {
    ref = parseReference(input, { defaultTag: false });
  } catch (e) {
    throw new InvalidArgumentError(`${flag} ${input}: ${(e as Error).message}`);
  }
  if (ref.tag !== undefined || ref.digest !== undefined) {
    throw new InvalidArgumentError(`${flag} ${input}: want a repository without tag or digest (each cache key becomes a tag)`);
  }
  return { domain: ref.domain, path: ref.path };
}

/** The reference of one cache entry. */
export function cacheEntryRef(repo: Reference, key: Digest): Reference {
  return { domain: repo.domain, path: repo.path, tag: digestHex(key) };
}

/**
 * Fetches the cache entry for `key` into the store: the manifest, then its config and layers,
 * each verified (the manifest against the digest the registry announced, each blob against its
 * descriptor while streaming and again by the store's writer before it becomes visible). Blobs
 * the store has are not fetched. Nothing is named (`pull` with `name: false`): the build cache
 * records the manifest, and keeps it alive for GC. Returns undefined when the registry has no such tag (or no
 * such repository): a miss, not an error.
 */
export async function importCacheEntry(client: RegistryClient, store: Store, repo: Reference, key: Digest): Promise<Descriptor | undefined> {
  const ref = cacheEntryRef(repo, key);
  const { pull } = await import('@tsbuild/registry-client');
  try {
    return (await pull(client, store, ref, { name: false })).descriptor;
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
}

/**
 * Pushes cache entries: each manifest (with its blobs; blobs the registry has are skipped by
 * HEAD) under `REPO:<key hex>`. In build order, so the base layers go up once, with the first.
 * Entries leave the machine as any push does: plain-tar layers compressed as `compression` says
 * (the store remembers each compressed blob, so a layer shared by several entries, or already
 * compressed by an earlier push, is compressed once), the config and so the image ID unchanged.
 */
export async function exportCacheEntries(
  client: RegistryClient,
  store: Store,
  repo: Reference,
  entries: Iterable<[Digest, Descriptor]>,
  compression: CompressImageOptions = { format: 'gzip' },
): Promise<number> {
  const { push } = await import('@tsbuild/registry-client');
  let n = 0;
  for (const [key, manifest] of entries) {
    await push(client, store, manifest, cacheEntryRef(repo, key), { compression });
    n++;
  }
  return n;
}
