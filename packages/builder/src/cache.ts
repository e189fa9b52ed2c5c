import type { Hash } from 'node:crypto';
import { createReadStream, lstatSync, promises as fsp, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { type Descriptor, type Digest, isDigest, crypto } from '@tsbuild/oci';

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
    for (const name of await this.entryNames()) {
      const d = await this.get(`sha256:${name}`);
      if (d) out.push(d.digest);
    }
    return out;
  }

  /** Drops every entry, with the inputs and step index records that explain them. */
  async clear(): Promise<number> {
    const n = (await this.entryNames()).length;
    await fsp.rm(this.dir, { recursive: true, force: true });
    return n;
  }

  private async entryNames(): Promise<string[]> {
    return (await fsp.readdir(this.dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n));
  }

  /**
   * Records what made `key` (for --explain-cache) and adds it to the index of `step`, the
   * step's identity across builds (see stepIdentity): the newest STEP_INDEX_SIZE keys first.
   * Written only when a step ran; a hit reads and writes none of this.
   */
  async putInputs(key: Digest, step: Digest, inputs: StepInputs): Promise<void> {
    const hex = key.slice('sha256:'.length);
    await fsp.mkdir(path.join(this.dir, 'inputs'), { recursive: true });
    await writeAtomic(path.join(this.dir, 'inputs', hex), gzipSync(JSON.stringify(inputs), { level: 1 }));
    const indexFile = path.join(this.dir, 'steps', step.slice('sha256:'.length));
    const index = (await readJson<StepIndexEntry[]>(indexFile)) ?? [];
    const next = [{ key, parent: inputs.parent, text: inputs.text }, ...index.filter((e) => e.key !== key)].slice(0, STEP_INDEX_SIZE);
    await fsp.mkdir(path.dirname(indexFile), { recursive: true });
    await writeAtomic(indexFile, JSON.stringify(next));
  }

  /**
   * Why `key` missed: the first input that differs from the nearest earlier entry of the same
   * step (same parent and text first, then same parent, then the newest), in one line.
   * `parentStep` names the step of this build whose result first differed (the FROM's when none
   * did: the base image changed).
   */
  async explainMiss(key: Digest, step: Digest, now: StepInputs, parentStep: number): Promise<string> {
    const index = (await readJson<StepIndexEntry[]>(path.join(this.dir, 'steps', step.slice('sha256:'.length)))) ?? [];
    if (index.length === 0) return 'no entry (first build)';
    if (index.some((e) => e.key === key)) return `entry ${shortKey(key)} is recorded but its layers are gone from the store (pruned)`;
    const near = index.find((e) => e.parent === now.parent && e.text === now.text) ?? index.find((e) => e.parent === now.parent) ?? index[0]!;
    if (near.parent !== now.parent) return `parent changed at step ${parentStep}`;
    if (near.text !== now.text) return `instruction text changed (was: ${clip(near.text, 60)})`;
    let was: StepInputs | undefined;
    try {
      was = JSON.parse(gunzipSync(await fsp.readFile(path.join(this.dir, 'inputs', near.key.slice('sha256:'.length)))).toString('utf8')) as StepInputs;
    } catch {
      return `inputs of the previous entry ${shortKey(near.key)} are not recorded`;
    }
    return diffInputs(was, now);
  }
}

/** How many earlier keys the index of one step keeps. */
const STEP_INDEX_SIZE = 8;

/**
 * What a step's cache key was made of, as --explain-cache compares it. Secrets never reach the
 * key and so never reach this. File digests are cut to 16 hex digits: they only explain (the key
 * hashes full ones), and a COPY of 10,000 files then records ~0.5 MB before gzip.
 */
export interface StepInputs {
  parent: Digest;
  text: string;
  args: [string, string][];
  copy?: { dest: string; owner: string; files: string[] };
}

interface StepIndexEntry {
  key: Digest;
  parent: Digest;
  text: string;
}

/** The first input that differs between two records of the same step with the same parent and text. */
export function diffInputs(was: StepInputs, now: StepInputs): string {
  const a = new Map(was.args);
  const b = new Map(now.args);
  for (const name of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const x = a.get(name);
    const y = b.get(name);
    if (x === y) continue;
    if (x === undefined) return `ARG ${name} set (${clip(y!, 40)})`;
    if (y === undefined) return `ARG ${name} unset (was ${clip(x, 40)})`;
    return `ARG ${name} changed (${clip(x, 40)} → ${clip(y, 40)})`;
  }
  if (was.copy && now.copy) {
    if (was.copy.dest !== now.copy.dest) return `destination changed (${was.copy.dest} → ${now.copy.dest})`;
    if (was.copy.owner !== now.copy.owner) return `owner or mode changed (${was.copy.owner} → ${now.copy.owner})`;
    const old = new Map(was.copy.files.map(splitFileLine));
    const seen = new Set<string>();
    for (const line of now.copy.files) {
      const [p, sig] = splitFileLine(line);
      seen.add(p);
      const before = old.get(p);
      if (before === undefined) return `${p} added`;
      if (before !== sig) return describeFileChange(p, before, sig);
    }
    for (const p of old.keys()) if (!seen.has(p)) return `${p} removed`;
  }
  return 'inputs changed';
}

function splitFileLine(line: string): [string, string] {
  const tab = line.lastIndexOf('\t');
  return [line.slice(0, tab), line.slice(tab + 1)];
}

/** `sig` is `F<mode> <size> <digest16>`, `D<mode>`, `L<mode> <target>` or `O<mode> <type> <rdev>`. */
function describeFileChange(p: string, before: string, after: string): string {
  const [ka, ...ra] = before.split(' ');
  const [kb, ...rb] = after.split(' ');
  if (ka![0] !== kb![0]) return `${p} changed type`;
  if (ka !== kb) return `${p} mode changed (${ka!.slice(1)} → ${kb!.slice(1)})`;
  if (ka![0] === 'F') return `${p} content changed (was ${ra[1]!.slice(0, 8)}…, now ${rb[1]!.slice(0, 8)}…)`;
  if (ka![0] === 'L') return `${p} link target changed (${clip(ra.join(' '), 40)} → ${clip(rb.join(' '), 40)})`;
  return `${p} changed`;
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

export function shortKey(key: Digest): string {
  return key.slice('sha256:'.length, 'sha256:'.length + 12);
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fsp.writeFile(tmp, data);
  await fsp.rename(tmp, file);
}

/** A cache key: sha256 over labelled parts, so that no two different inputs share one encoding. */
export function cacheKey(parts: Record<string, unknown>): Digest {
  return `sha256:${crypto().createHash('sha256').update(JSON.stringify(parts)).digest('hex')}`;
}

/**
 * What a COPY/ADD reads from its sources, for the cache key: every path (relative to its
 * source), type, permission bits, symlink target and content hash; owners only of a source whose
 * owners the copy keeps (`keepOwners`: COPY --from, ADD archives), as COPY sets its own otherwise.
 * Not mtimes, not files the context leaves out. Also counts the entries it walked.
 */
export async function hashSources(sources: string[], keepOwners?: boolean[]): Promise<{ digest: Digest; entries: number; files: string[] }> {
  const h = crypto().createHash('sha256');
  const count = { entries: 0, files: [] as string[], label: '' };
  for (const [i, src] of sources.entries()) {
    const owners = keepOwners?.[i] === true;
    h.update(`source ${path.basename(src)}${owners ? ' owners' : ''}\n`);
    count.label = path.basename(src);
    await hashTree(src, '', h, count, owners);
  }
  return { digest: `sha256:${h.digest('hex')}`, entries: count.entries, files: count.files };
}

/**
 * Synchronous on purpose: a COPY of 10,000 small files costs five syscalls each, and awaiting
 * each one on the libuv pool in turn took ~1.9 s here; sync calls take a fraction of that. The
 * build is waiting for this key anyway.
 */
async function hashTree(abs: string, rel: string, h: Hash, count: { entries: number; files: string[]; label: string }, owners: boolean): Promise<void> {
  count.entries++;
  const st = lstatSync(abs);
  const mode = (st.mode & 0o7777).toString(8) + (owners ? ` ${st.uid}:${st.gid}` : '');
  // Each entry also as one short line for --explain-cache (StepInputs.copy.files): its path under
  // the source's name, a tab, and what the key took of it.
  const name = rel === '' ? count.label : `${count.label}/${rel}`;
  const m = mode.replace(' ', ':');
  if (st.isSymbolicLink()) {
    const target = readlinkSync(abs);
    h.update(`L ${rel} ${mode} ${target}\n`);
    count.files.push(`${name}\tL${m} ${target}`);
  } else if (st.isDirectory()) {
    h.update(`D ${rel} ${mode}\n`);
    count.files.push(`${name}\tD${m}`);
    const names = readdirSync(abs).sort();
    for (const n of names) await hashTree(path.join(abs, n), rel === '' ? n : `${rel}/${n}`, h, count, owners);
  } else if (st.isFile()) {
    const digest = await fileDigest(abs, st.size);
    h.update(`F ${rel} ${mode} ${st.size} ${digest}\n`);
    count.files.push(`${name}\tF${m} ${st.size} ${digest.slice(0, 16)}`);
  } else {
    h.update(`O ${rel} ${mode} ${st.mode >> 12} ${st.rdev}\n`);
    count.files.push(`${name}\tO${m} ${st.mode >> 12} ${st.rdev}`);
  }
}

async function fileDigest(p: string, size: number): Promise<string> {
  const h = crypto().createHash('sha256');
  if (size <= 1 << 20) {
    h.update(readFileSync(p));
  } else {
    for await (const chunk of createReadStream(p, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}
