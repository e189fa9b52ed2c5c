import { mkdirSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive } from '@tsbuild/linux';
import {
  DataLossError,
  InvalidArgumentError,
  NotFoundError,
  digestAlgorithm,
  isDigest,
  isIndexMediaType,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MediaType,
  crypto,
} from '@tsbuild/oci';
import { FileContentStore, isErrno, type ContentStore } from './content-store.js';
import { FileLock, type LockMode } from './file-lock.js';
import { openImage, type Image } from './image.js';
import { readListSources, sweepListSources } from './list-sources.js';
import { defaultStoreRoot } from './default-root.js';
import { runScratchOwner } from './run-scratch.js';
import { UNTAGGED_PREFIX, normaliseName, readImagesFile, untaggedKey, writeImagesFile, type ImageRecord } from './image-names.js';

/** Manifests and indexes are small; registries commonly cap them at 4 MiB. */
const MAX_MANIFEST_SIZE = 4 << 20;

export interface FsckProblem {
  /** bad-json: a manifest, index, config or images.json does not parse; bad-shape: it parses, but not as what it must be. */
  kind: 'corrupt-blob' | 'missing-blob' | 'bad-json' | 'bad-shape' | 'bad-name';
  digest?: Digest;
  name?: string;
  message: string;
}

export interface FsckReport {
  blobsChecked: number;
  bytesChecked: number;
  problems: FsckProblem[];
}

/**
 * The local image store under one root (default /var/lib/tsbuild; layout in docs/DESIGN.md).
 *
 * Concurrency: every command that adds data (build, pull, load) runs inside
 * `withLock('shared', …)`, so many can run at once; `prune` runs `gc` inside
 * `withLock('exclusive', …)`, so it never deletes a blob that a running build has written but not
 * yet named. Names live in images.json, rewritten atomically under a short flock on images.lock,
 * so concurrent `setName` calls from any number of processes never lose an update.
 */
export class Store {
  readonly content: ContentStore;
  private readonly storeLock: FileLock;
  private readonly namesLock: FileLock;
  private readonly imagesPath: string;

  private constructor(readonly root: string) {
    this.content = new FileContentStore(root);
    this.storeLock = new FileLock(join(root, 'lock'));
    this.namesLock = new FileLock(join(root, 'images.lock'));
    this.imagesPath = join(root, 'images.json');
  }

  /** Opens (creating as needed) the store at `root`. */
  static async open(root: string = defaultStoreRoot()): Promise<Store> {
    // At once: three mkdirs of directories that exist cost less than three trips through the thread pool.
    for (const dir of ['blobs/sha256', 'ingest', 'tmp']) mkdirSync(join(root, dir), { recursive: true });
    return new Store(root);
  }

  /** flock(2) on root/lock: 'shared' while a command adds data (build, import, load), 'exclusive' for prune. */
  withLock<T>(mode: LockMode, fn: () => Promise<T>): Promise<T> {
    return this.storeLock.with(mode, fn);
  }

  /** Every name, sorted, then the untagged images (records without a name). */
  async listImages(): Promise<ImageRecord[]> {
    const images = await readImagesFile(this.imagesPath);
    const untagged = (k: string) => (k.startsWith(UNTAGGED_PREFIX) ? 1 : 0);
    return [...images.entries()]
      .sort(([a], [b]) => untagged(a) - untagged(b) || (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, descriptor]) => (key.startsWith(UNTAGGED_PREFIX) ? { descriptor } : { name: key, descriptor }));
  }

  /** Records an image without a name (a build without -t); a no-op if it is already recorded. */
  async addImage(desc: Descriptor): Promise<void> {
    const stored = storedDescriptor(desc);
    await this.namesLock.with('exclusive', async () => {
      const images = await readImagesFile(this.imagesPath);
      if ([...images.values()].some((d) => d.digest === stored.digest)) return;
      images.set(untaggedKey(stored.digest), stored);
      await writeImagesFile(this.imagesPath, images);
    });
  }

  /** Removes an image: every name that points at it and its untagged record. */
  async removeImage(digest: Digest): Promise<string[]> {
    return this.namesLock.with('exclusive', async () => {
      const images = await readImagesFile(this.imagesPath);
      const names = [...images.entries()].filter(([, d]) => d.digest === digest).map(([k]) => k);
      if (names.length === 0) throw new NotFoundError(`image not known: ${digest}`);
      for (const k of names) images.delete(k);
      await writeImagesFile(this.imagesPath, images);
      return names.filter((k) => !k.startsWith(UNTAGGED_PREFIX));
    });
  }

  /**
   * Points `name` (normalised, tag `latest` by default) at a manifest or index. An image the name
   * pointed at before, and that no other name keeps, stays in the store untagged (docker's
   * `<none>`), so a rebuild under the same tag does not silently drop the previous image; unless
   * `keepReplaced` is false (a manifest list changed by `manifest add`: its old version is no image).
   */
  async setName(name: string, desc: Descriptor, opts: { keepReplaced?: boolean } = {}): Promise<void> {
    const normal = normaliseName(name);
    if (!isDigest(desc.digest)) throw new InvalidArgumentError(`invalid digest "${desc.digest}" for image ${normal}`);
    const stored = storedDescriptor(desc);
    await this.namesLock.with('exclusive', async () => {
      const images = await readImagesFile(this.imagesPath);
      const old = images.get(normal);
      // Already so (a cached rebuild under the same tag): nothing to rewrite and fsync.
      if (old?.digest === stored.digest && !images.has(untaggedKey(stored.digest))) return;
      images.set(normal, stored);
      images.delete(untaggedKey(stored.digest));
      if (opts.keepReplaced !== false && old !== undefined && old.digest !== stored.digest && ![...images.values()].some((d) => d.digest === old.digest)) {
        images.set(untaggedKey(old.digest), old);
      }
      await writeImagesFile(this.imagesPath, images);
    });
  }

  /** Removes a name and returns what it pointed at. NotFoundError `image not known: NAME`. */
  async removeName(name: string): Promise<Descriptor> {
    const normal = normaliseName(name);
    return this.namesLock.with('exclusive', async () => {
      const images = await readImagesFile(this.imagesPath);
      const d = images.get(normal);
      if (d === undefined) throw new NotFoundError(`image not known: ${name}`);
      images.delete(normal);
      await writeImagesFile(this.imagesPath, images);
      return d;
    });
  }

  /**
   * A name (normalised), a manifest digest, or an image ID = config digest (full 'sha256:…' or a
   * unique hex prefix of >= 3 chars, with or without 'sha256:') among named images.
   * NotFoundError `image not known: X`; InvalidArgumentError when a prefix matches several images.
   */
  async resolve(nameOrId: string): Promise<{ descriptor: Descriptor; names: string[] }> {
    const records = await this.listImages();
    const found = (d: Descriptor) => ({
      descriptor: d,
      names: records.filter((r) => r.descriptor.digest === d.digest && r.name !== undefined).map((r) => r.name!),
    });

    // A name first, as docker does: `abc` is the image named abc before it is an ID prefix.
    let normal: string | undefined;
    try {
      normal = normaliseName(nameOrId);
    } catch {
      normal = undefined;
    }
    const byName = normal !== undefined ? records.find((r) => r.name === normal) : undefined;
    if (byName !== undefined) return found(byName.descriptor);

    const hex = nameOrId.startsWith('sha256:') ? nameOrId.slice('sha256:'.length) : nameOrId;
    if (!/^[a-f0-9]{3,64}$/.test(hex)) throw new NotFoundError(`image not known: ${nameOrId}`);
    const full = `sha256:${hex}`;

    // Manifest digests match in full only; image IDs (config digests) match by prefix too.
    const byManifest = records.find((r) => r.descriptor.digest === full);
    if (byManifest !== undefined) return found(byManifest.descriptor);
    const matches = new Map<Digest, Descriptor>();
    for (const r of records) {
      const id = await this.imageId(r.descriptor).catch(() => undefined);
      if (id !== undefined && id.startsWith(full)) matches.set(r.descriptor.digest, r.descriptor);
    }
    if (matches.size === 0) throw new NotFoundError(`image not known: ${nameOrId}`);
    if (matches.size > 1) {
      throw new InvalidArgumentError(`image ID prefix "${nameOrId}" is ambiguous: it matches ${matches.size} images`);
    }
    return found([...matches.values()][0] as Descriptor);
  }

  /** The image ID docker prints: the config digest (for an index, the index digest). */
  private async imageId(d: Descriptor): Promise<Digest> {
    if (isIndexMediaType(d.mediaType)) return d.digest;
    return (await this.image(d).configDescriptor()).digest;
  }

  /** The image a descriptor points at, read lazily. */
  image(desc: Descriptor): Image {
    return openImage(this.content, (d) => this.readJSON(d), desc);
  }

  /** Stores `value` as compact JSON; the bytes are what is hashed, so they must not be re-serialised. */
  async putJSON(value: unknown, mediaType: string): Promise<Descriptor> {
    const buf = Buffer.from(JSON.stringify(value), 'utf8');
    const { digest, size } = await this.content.writeBuffer(buf);
    return { mediaType, digest, size };
  }

  async readJSON<T>(d: Digest): Promise<T> {
    const body = (await this.content.readBuffer(d)).toString('utf8');
    try {
      return JSON.parse(body) as T;
    } catch (e) {
      throw new DataLossError(`blob ${d} is not valid JSON: ${(e as Error).message}`);
    }
  }

  /**
   * Mark from every name (manifest → config + layers; index → child manifests), sweep
   * unreferenced blobs, and empty ingest/ and tmp/. `keep` adds extra roots. The caller holds the
   * exclusive lock: nothing else is writing, so whatever is in ingest/ is a crash's leftover. In
   * tmp/ the scratch directory of a live process's run stays (runScratchDir): `tsbuild run` makes
   * it and starts its helper from it before it takes the store's lock.
   */
  async gc(opts: { keep?: Digest[] } = {}): Promise<{ removed: { digest: Digest; size: number }[]; bytes: number }> {
    const marked = new Set<Digest>();
    const roots: Descriptor[] = (await this.listImages()).map((r) => r.descriptor);
    for (const d of opts.keep ?? []) {
      const info = await this.content.info(d);
      if (info !== undefined) roots.push({ mediaType: 'application/octet-stream', digest: d, size: info.size });
    }
    for (const root of roots) await this.walk(root, (d) => void marked.add(d.digest), () => undefined);

    const removed: { digest: Digest; size: number }[] = [];
    let bytes = 0;
    for await (const blob of this.content.list()) {
      if (marked.has(blob.digest)) continue;
      await this.content.delete(blob.digest);
      removed.push(blob);
      bytes += blob.size;
    }
    await sweepListSources(this.root, marked);
    await emptyDir(join(this.root, 'ingest'));
    await emptyDir(join(this.root, 'tmp'), (name) => {
      const owner = runScratchOwner(name);
      return owner !== undefined && processAlive(owner);
    });
    // A crash in setName can leave images.json.tmp; remove it under the names lock, where no
    // setName can be writing it right now.
    await this.namesLock.with('exclusive', () => rm(`${this.imagesPath}.tmp`, { force: true }));
    return { removed, bytes };
  }

  /**
   * Re-hashes every blob against its name, and checks that every name's manifest, config and
   * layers are present and parse. Leftovers of a crash in ingest/ are not problems: they were
   * never visible.
   */
  async fsck(): Promise<FsckReport> {
    const problems: FsckProblem[] = [];
    let blobsChecked = 0;
    let bytesChecked = 0;
    for await (const blob of this.content.list()) {
      const hash = crypto().createHash(digestAlgorithm(blob.digest));
      let size = 0;
      for await (const chunk of await this.content.read(blob.digest)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      const actual = `${digestAlgorithm(blob.digest)}:${hash.digest('hex')}`;
      blobsChecked++;
      bytesChecked += size;
      if (actual !== blob.digest) {
        problems.push({ kind: 'corrupt-blob', digest: blob.digest, message: `blob ${blob.digest} hashes to ${actual} (${this.content.path(blob.digest)})` });
      }
    }

    let records: ImageRecord[] = [];
    try {
      records = await this.listImages();
    } catch (e) {
      problems.push({ kind: 'bad-json', message: (e as Error).message });
    }
    for (const r of records) {
      if (r.name === undefined) {
        await this.walk(r.descriptor, () => undefined, (p) => problems.push(p));
        continue;
      }
      try {
        if (normaliseName(r.name) !== r.name) {
          problems.push({ kind: 'bad-name', name: r.name, message: `image name "${r.name}" is not normalised` });
        }
      } catch (e) {
        problems.push({ kind: 'bad-name', name: r.name, message: `image name "${r.name}": ${(e as Error).message}` });
      }
      await this.walk(r.descriptor, () => undefined, (p) => problems.push({ ...p, name: r.name }));
    }
    return { blobsChecked, bytesChecked, problems };
  }

  /**
   * Visits `d` and everything it references (index → manifests, manifest → config + layers +
   * subject), reporting absent or unparsable blobs instead of throwing.
   */
  private async walk(d: Descriptor, visit: (d: Descriptor) => void, problem: (p: FsckProblem) => void): Promise<void> {
    const info = await this.content.info(d.digest);
    if (info === undefined) {
      problem({ kind: 'missing-blob', digest: d.digest, message: `blob ${d.digest} (${d.mediaType}) is missing` });
      return;
    }
    visit(d);
    if (info.size !== d.size && d.mediaType !== 'application/octet-stream') {
      problem({ kind: 'corrupt-blob', digest: d.digest, message: `blob ${d.digest} is ${info.size} bytes, descriptor says ${d.size}` });
    }
    // A `keep` root of unknown type is sniffed only when small enough to be a manifest.
    if (!isJSONMediaType(d.mediaType) || info.size > MAX_MANIFEST_SIZE) return;
    let body: ImageManifest | ImageIndex;
    try {
      body = await this.readJSON<ImageManifest | ImageIndex>(d.digest);
    } catch (e) {
      if (d.mediaType !== 'application/octet-stream') {
        problem({ kind: 'bad-json', digest: d.digest, message: (e as Error).message });
      }
      return;
    }
    // A `keep` root of unknown type is only followed when it looks like a manifest or an index.
    const sniffed = d.mediaType === 'application/octet-stream';
    const what = isIndexMediaType(d.mediaType) ? 'index' : 'manifest';
    const shape = (why: string) => {
      if (!sniffed) problem({ kind: 'bad-shape', digest: d.digest, message: `${what} ${d.digest}: ${why}` });
    };
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      shape('not a JSON object');
      return;
    }
    if (isIndexMediaType(d.mediaType) || 'manifests' in body) {
      const manifests: unknown = (body as ImageIndex).manifests;
      if (!Array.isArray(manifests)) return shape('no manifests list');
      // An entry added from a registry (`manifest add docker://…`) has its manifest there, not here.
      let remote = new Map<Digest, string>();
      try {
        remote = await readListSources(this.root, d.digest);
      } catch (e) {
        problem({ kind: 'bad-json', digest: d.digest, message: (e as Error).message });
      }
      for (const [i, m] of manifests.entries()) {
        const why = descriptorProblem(m);
        if (why !== undefined) shape(`manifests[${i}]: ${why}`);
        else if (remote.has((m as Descriptor).digest) && (await this.content.info((m as Descriptor).digest)) === undefined) continue;
        else await this.walk(m as Descriptor, visit, problem);
      }
      return;
    }
    const m = body as ImageManifest;
    if (sniffed && !('config' in m && 'layers' in m)) return;
    // What is well-formed is still visited (gc marks it) when something beside it is not.
    const layers: Descriptor[] = [];
    if (!Array.isArray(m.layers)) shape('no layers list');
    else {
      for (const [i, l] of (m.layers as unknown[]).entries()) {
        const why = descriptorProblem(l);
        if (why !== undefined) shape(`layers[${i}]: ${why}`);
        else layers.push(l as Descriptor);
      }
    }
    const configWhy = descriptorProblem(m.config);
    if (configWhy !== undefined) shape(`config: ${configWhy}`);
    else if ((await this.walkLeaf(m.config, visit, problem)) && Array.isArray(m.layers)) await this.checkConfig(m, layers.length, problem);
    for (const l of layers) await this.walkLeaf(l, visit, problem);
    if (m.subject !== undefined) {
      const why = descriptorProblem(m.subject);
      if (why !== undefined) shape(`subject: ${why}`);
      else await this.walkLeaf(m.subject, visit, problem);
    }
  }

  /**
   * An image config must parse and list one diffID per layer: `images`, `run` and `build` read it
   * first thing. Other config types (artifacts) are only checked to exist.
   */
  private async checkConfig(m: ImageManifest, layers: number, problem: (p: FsckProblem) => void): Promise<void> {
    const d = m.config;
    if (d.mediaType !== MediaType.OciConfig && d.mediaType !== MediaType.DockerConfig) return;
    const bad = (why: string) => problem({ kind: 'bad-shape', digest: d.digest, message: `config ${d.digest}: ${why}` });
    if (d.size > MAX_MANIFEST_SIZE) return bad(`${d.size} bytes, more than the ${MAX_MANIFEST_SIZE} a config may have here`);
    let config: unknown;
    try {
      config = JSON.parse((await this.content.readBuffer(d.digest)).toString('utf8'));
    } catch (e) {
      problem({ kind: 'bad-json', digest: d.digest, message: `config ${d.digest} is not valid JSON: ${(e as Error).message}` });
      return;
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) return bad('not a JSON object');
    const diffIDs: unknown = (config as ImageConfig).rootfs?.diff_ids;
    if (!Array.isArray(diffIDs)) return bad('rootfs.diff_ids is not a list');
    const wrong = diffIDs.findIndex((x) => typeof x !== 'string' || !isDigest(x));
    if (wrong !== -1) return bad(`rootfs.diff_ids[${wrong}] is not a digest`);
    if (diffIDs.length !== layers) bad(`lists ${diffIDs.length} diff_ids for the manifest's ${layers} layers`);
  }

  /** Checks a config, layer or subject blob is there with its size; true when it is. */
  private async walkLeaf(d: Descriptor, visit: (d: Descriptor) => void, problem: (p: FsckProblem) => void): Promise<boolean> {
    // Foreign layers (urls set) may legitimately be absent: they are fetched from their urls.
    if (d.urls !== undefined && d.urls.length > 0 && (await this.content.info(d.digest)) === undefined) return false;
    const info = await this.content.info(d.digest);
    if (info === undefined) {
      problem({ kind: 'missing-blob', digest: d.digest, message: `blob ${d.digest} (${d.mediaType}) is missing` });
      return false;
    }
    visit(d);
    if (info.size !== d.size) {
      problem({ kind: 'corrupt-blob', digest: d.digest, message: `blob ${d.digest} is ${info.size} bytes, descriptor says ${d.size}` });
      return false;
    }
    return true;
  }
}

/** What is wrong with a descriptor read from a stored manifest or index, if anything. */
function descriptorProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a descriptor object';
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') return 'no mediaType';
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) return `invalid digest "${String(d.digest)}"`;
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) return `invalid size "${String(d.size)}"`;
  return undefined;
}

function storedDescriptor(desc: Descriptor): Descriptor {
  if (!isDigest(desc.digest)) throw new InvalidArgumentError(`invalid digest "${desc.digest}"`);
  const stored: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
  if (desc.platform !== undefined) stored.platform = desc.platform;
  return stored;
}

/** Manifests and indexes (JSON we follow); an unknown type of a `keep` root is sniffed too. */
function isJSONMediaType(mt: string): boolean {
  return mt.endsWith('+json') || mt.endsWith('.json') || mt === 'application/octet-stream';
}

/** Removes everything in `dir` but what `keep` names. */
async function emptyDir(dir: string, keep: (name: string) => boolean = () => false): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw e;
  }
  for (const n of names) if (!keep(n)) await rm(join(dir, n), { recursive: true, force: true });
}
