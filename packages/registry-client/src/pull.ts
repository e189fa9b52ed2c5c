import { pipeline } from 'node:stream/promises';
import {
  DataLossError,
  NotFoundError,
  InvalidArgumentError,
  formatPlatform,
  formatReference,
  hostPlatform,
  isDigest,
  repositoryName,
  isIndexMediaType,
  isManifestMediaType,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Reference,
} from '@tsbuild/oci';
import type { Store } from '@tsbuild/store';
import { mapLimit } from './bounded-concurrency.js';
import { selectPlatform } from './platform-select.js';
import type { ProgressEvent, RegistryClient } from './registry-client.js';

export interface PullOptions {
  /** Default: this machine's platform. */
  platform?: Platform;
  /**
   * false: store the image without naming it or recording it as untagged; the caller keeps it
   * alive (the build cache does). Default true.
   */
  name?: boolean;
  onProgress?: (e: ProgressEvent) => void;
}

/**
 * Pulls an image into the store. The order makes an interruption harmless and resumable:
 *   1. the manifest (and, for an index, the platform's manifest) is fetched and verified in memory;
 *   2. the config and layers go into the content store, `client.concurrency` at a time, each
 *      verified while streaming and committed only when its digest and size match; blobs the
 *      store has already are not fetched again. The config is read into memory and must be a
 *      JSON object, or nothing is named (commands that list images read every config);
 *   3. the manifests are stored after the blobs they reference;
 *   4. the name is set last.
 * A pull stopped anywhere leaves at most verified, unnamed blobs, which the next pull reuses and
 * `prune` removes. The name points at the platform's manifest (with its platform), so the store
 * reads the image that was pulled whatever the host is.
 */
export async function pull(client: RegistryClient, store: Store, ref: Reference, opts: PullOptions = {}): Promise<{ descriptor: Descriptor; name: string }> {
  const progress = (e: ProgressEvent) => opts.onProgress?.(e);
  // The manifest needs no lock: it is asked for while the lock is taken.
  const first = client.getManifest(ref);
  first.catch(() => undefined); // awaited (and reported) below
  return store.withLock('shared', async () => {
    const top = await first;
    let manifest = top;
    const extra: { descriptor: Descriptor; body: Buffer }[] = [];
    let platform: Platform | undefined;
    if (isIndexMediaType(top.descriptor.mediaType)) {
      const index = parseJSON<ImageIndex>(top.body, ref);
      const where = `index ${repositoryName(ref)}@${top.descriptor.digest}`;
      if (!Array.isArray(index.manifests)) throw new DataLossError(`${where} has no manifests list`);
      index.manifests.forEach((d, i) => checkDescriptor(d, `${where}: manifest ${i}`));
      const want = opts.platform ?? hostPlatform();
      const child = selectPlatform(index.manifests, want);
      if (child === undefined) {
        const offered = index.manifests.filter((m) => m.platform !== undefined).map((m) => formatPlatform(m.platform!));
        throw new NotFoundError(`${formatReference(ref)}: no image for platform ${formatPlatform(want)} (the index has ${offered.join(', ') || 'no platforms'})`);
      }
      manifest = await client.getManifest(ref, child);
      platform = child.platform;
      extra.push(top);
    }
    if (!isManifestMediaType(manifest.descriptor.mediaType)) {
      throw new InvalidArgumentError(`${formatReference(ref)}: expected an image manifest, got ${manifest.descriptor.mediaType}`);
    }
    const m = parseJSON<ImageManifest>(manifest.body, ref);
    const where = `manifest ${repositoryName(ref)}@${manifest.descriptor.digest}`;
    if (typeof m.config !== 'object' || m.config === null || !Array.isArray(m.layers)) {
      throw new DataLossError(`${where} has no config or no layers list`);
    }
    checkDescriptor(m.config, `${where}: config`);
    m.layers.forEach((d, i) => checkDescriptor(d, `${where}: layer ${i}`));
    const seen = new Set<string>();
    const blobs = [m.config, ...m.layers].filter((b) => !seen.has(b.digest) && seen.add(b.digest));
    for (const b of blobs) progress({ digest: b.digest, phase: 'waiting', current: 0, total: b.size });
    await mapLimit(blobs, client.concurrency, async (b) => {
      const have = await store.content.info(b.digest);
      if (have !== undefined && have.size === b.size) {
        progress({ digest: b.digest, phase: 'exists', current: b.size, total: b.size });
        progress({ digest: b.digest, phase: 'done', current: b.size, total: b.size });
        return;
      }
      if (b === m.config) {
        // Checked in memory before it is stored (see RegistryClient.getConfig).
        await store.content.writeBuffer(await client.getConfig(ref, b), b.digest);
        progress({ digest: b.digest, phase: 'done', current: b.size, total: b.size });
        return;
      }
      // The blob writer verifies digest and size before the blob becomes visible, so the digest
      // is hashed once, there.
      const src = await client.getBlob(ref, b, { onProgress: progress, verifyDigest: false });
      const w = await store.content.write({ expected: b.digest, size: b.size });
      try {
        await pipeline(src, w);
      } catch (e) {
        await w.abort();
        throw e;
      }
      await w.commit();
      progress({ digest: b.digest, phase: 'done', current: b.size, total: b.size });
    });
    await store.content.writeBuffer(manifest.body, manifest.descriptor.digest);
    for (const x of extra) await store.content.writeBuffer(x.body, x.descriptor.digest);
    const descriptor: Descriptor = { ...manifest.descriptor, ...(platform !== undefined ? { platform } : {}) };
    if (opts.name === false) return { descriptor, name: formatReference(ref) };
    if (ref.tag !== undefined) {
      const name = formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag });
      await store.setName(name, descriptor);
      return { descriptor, name };
    }
    await store.addImage(descriptor);
    return { descriptor, name: formatReference(ref) };
  });
}

/**
 * `pull --all-platforms` (podman's flag): every image of an index, then the index itself under
 * the reference's name, as a manifest list (the `manifest` verbs and `push` of the name work on
 * it). Each image is pulled by digest and kept unnamed, the index stored and named last, so an
 * interrupted pull names nothing. A reference to a single image is pulled as `pull` does.
 */
export async function pullAllPlatforms(client: RegistryClient, store: Store, ref: Reference, opts: Omit<PullOptions, 'platform' | 'name'> = {}): Promise<{ descriptor: Descriptor; name: string; images: Descriptor[] }> {
  const top = await client.getManifest(ref);
  if (!isIndexMediaType(top.descriptor.mediaType)) {
    const r = await pull(client, store, ref, opts);
    return { ...r, images: [r.descriptor] };
  }
  const index = parseJSON<ImageIndex>(top.body, ref);
  const where = `index ${repositoryName(ref)}@${top.descriptor.digest}`;
  if (!Array.isArray(index.manifests)) throw new DataLossError(`${where} has no manifests list`);
  index.manifests.forEach((d, i) => checkDescriptor(d, `${where}: manifest ${i}`));
  // Held across the images and the naming: a prune must not collect an image pulled but not yet named.
  return store.withLock('shared', async () => {
    const images: Descriptor[] = [];
    for (const child of index.manifests) {
      if (isIndexMediaType(child.mediaType)) throw new InvalidArgumentError(`${where}: nested index ${child.digest} is not supported`);
      const r = await pull(client, store, { domain: ref.domain, path: ref.path, digest: child.digest }, { ...opts, name: false });
      images.push({ ...r.descriptor, ...(child.platform !== undefined ? { platform: child.platform } : {}) });
    }
    await store.content.writeBuffer(top.body, top.descriptor.digest);
    if (ref.tag !== undefined) {
      const name = formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag });
      await store.setName(name, top.descriptor);
      return { descriptor: top.descriptor, name, images };
    }
    await store.addImage(top.descriptor);
    return { descriptor: top.descriptor, name: formatReference(ref), images };
  });
}

/**
 * A descriptor from a manifest or index as the registry sent it: its digest goes into URLs and
 * store paths and its size bounds what is read, so both must be well formed before either is used.
 */
function checkDescriptor(d: unknown, where: string): asserts d is Descriptor {
  const x = d as Partial<Descriptor> | null;
  if (typeof x !== 'object' || x === null) throw new DataLossError(`${where} is not a descriptor`);
  if (typeof x.digest !== 'string' || !isDigest(x.digest)) throw new DataLossError(`${where} has an invalid digest`);
  if (typeof x.size !== 'number' || !Number.isSafeInteger(x.size) || x.size < 0) throw new DataLossError(`${where} has an invalid size`);
  if (typeof x.mediaType !== 'string') throw new DataLossError(`${where} has no media type`);
}

function parseJSON<T>(body: Buffer, ref: Reference): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new DataLossError(`manifest of ${formatReference(ref)} is not valid JSON`);
  }
}
