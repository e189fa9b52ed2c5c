import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, promises as fsp, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { type Descriptor, type Digest, isDigest } from '@tsbuild/oci';

/**
 * The build cache: instruction cache key → the image state after that instruction, stored as an
 * ordinary manifest (config with history, layers) in the content store. One small file per key
 * under <store>/cache/, written with rename so that concurrent builds never see half an entry.
 * The manifests are GC roots for `prune` (unless the cache itself is pruned).
 */
export class BuildCache {
  constructor(private readonly dir: string) {}

  private file(key: Digest): string {
    return path.join(this.dir, key.slice('sha256:'.length));
  }

  async get(key: Digest): Promise<Descriptor | undefined> {
    try {
      const d = JSON.parse(await fsp.readFile(this.file(key), 'utf8')) as Descriptor;
      return isDigest(d.digest) ? d : undefined;
    } catch {
      return undefined;
    }
  }

  async put(key: Digest, manifest: Descriptor): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    const tmp = `${this.file(key)}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify({ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size }));
    await fsp.rename(tmp, this.file(key));
  }

  /** Every manifest the cache keeps alive, for GC. */
  async roots(): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const name of await fsp.readdir(this.dir).catch(() => [] as string[])) {
      if (name.endsWith('.tmp')) continue;
      const d = await this.get(`sha256:${name}`);
      if (d) out.push(d.digest);
    }
    return out;
  }

  async clear(): Promise<number> {
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    await fsp.rm(this.dir, { recursive: true, force: true });
    return names.length;
  }
}

/** A cache key: sha256 over labelled parts, so that no two different inputs share one encoding. */
export function cacheKey(parts: Record<string, unknown>): Digest {
  return `sha256:${createHash('sha256').update(JSON.stringify(parts)).digest('hex')}`;
}

/**
 * What a COPY/ADD reads from its sources, for the cache key: every path (relative to its
 * source), type, permission bits, symlink target and content hash; owners only of a source whose
 * owners the copy keeps (`keepOwners`: COPY --from, ADD archives), as COPY sets its own otherwise.
 * Not mtimes, not files the context leaves out. Also counts the entries it walked.
 */
export async function hashSources(sources: string[], keepOwners?: boolean[]): Promise<{ digest: Digest; entries: number }> {
  const h = createHash('sha256');
  const count = { entries: 0 };
  for (const [i, src] of sources.entries()) {
    const owners = keepOwners?.[i] === true;
    h.update(`source ${path.basename(src)}${owners ? ' owners' : ''}\n`);
    await hashTree(src, '', h, count, owners);
  }
  return { digest: `sha256:${h.digest('hex')}`, entries: count.entries };
}

/**
 * Synchronous on purpose: a COPY of 10,000 small files costs five syscalls each, and awaiting
 * each one on the libuv pool in turn took ~1.9 s here; sync calls take a fraction of that. The
 * build is waiting for this key anyway.
 */
async function hashTree(abs: string, rel: string, h: ReturnType<typeof createHash>, count: { entries: number }, owners: boolean): Promise<void> {
  count.entries++;
  const st = lstatSync(abs);
  const mode = (st.mode & 0o7777).toString(8) + (owners ? ` ${st.uid}:${st.gid}` : '');
  if (st.isSymbolicLink()) {
    h.update(`L ${rel} ${mode} ${readlinkSync(abs)}\n`);
  } else if (st.isDirectory()) {
    h.update(`D ${rel} ${mode}\n`);
    const names = readdirSync(abs).sort();
    for (const n of names) await hashTree(path.join(abs, n), rel === '' ? n : `${rel}/${n}`, h, count, owners);
  } else if (st.isFile()) {
    h.update(`F ${rel} ${mode} ${st.size} ${await fileDigest(abs, st.size)}\n`);
  } else {
    h.update(`O ${rel} ${mode} ${st.mode >> 12} ${st.rdev}\n`);
  }
}

async function fileDigest(p: string, size: number): Promise<string> {
  const h = createHash('sha256');
  if (size <= 1 << 20) {
    h.update(readFileSync(p));
  } else {
    for await (const chunk of createReadStream(p, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}
