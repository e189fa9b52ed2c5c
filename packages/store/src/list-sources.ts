import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DataLossError, digestHex, isDigest, type Digest } from '@tsbuild/oci';
import { isErrno } from './content-store.js';
import { writeFileAtomic } from './fs-sync.js';

/**
 * Where the entries of a manifest list came from, when not from this store: `manifest add
 * docker://REF` records the registry's descriptor of REF without pulling it (as buildah does), so
 * the entry's manifest is not in the store, and that is no fault. One file per list digest,
 * `<root>/manifest-lists/<hex>.json` = `{"remote": {"<entry digest>": "docker://REF"}}`, beside the
 * content store rather than in the index, so the index bytes stay what is pushed and what
 * `manifest inspect` shows (buildah keeps its `instances` map apart from the list too).
 *
 * The file is keyed by the list's digest, which says everything about the list, so it never
 * changes once written; it is written before the list's name is set, and gc removes the files of
 * lists it did not mark.
 */
export type RemoteSources = ReadonlyMap<Digest, string>;

const DIR = 'manifest-lists';

function sourcesPath(root: string, list: Digest): string {
  return join(root, DIR, `${digestHex(list)}.json`);
}

export async function writeListSources(root: string, list: Digest, remote: RemoteSources): Promise<void> {
  if (remote.size === 0) return;
  await mkdir(join(root, DIR), { recursive: true });
  const path = sourcesPath(root, list);
  await writeFileAtomic(path, `${path}.tmp`, JSON.stringify({ remote: Object.fromEntries(remote) }));
}

/** The entries of list `list` that were added from a registry; empty when none were. */
export async function readListSources(root: string, list: Digest): Promise<Map<Digest, string>> {
  const path = sourcesPath(root, list);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return new Map();
    throw e;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new DataLossError(`${path} is not valid JSON`);
  }
  const remote = (body as { remote?: unknown } | null)?.remote;
  if (typeof remote !== 'object' || remote === null) throw new DataLossError(`${path} has no "remote" object`);
  const out = new Map<Digest, string>();
  for (const [k, v] of Object.entries(remote)) {
    if (!isDigest(k) || typeof v !== 'string') throw new DataLossError(`${path}: entry "${k}" is not a digest and a reference`);
    out.set(k, v);
  }
  return out;
}

/** Removes the files of lists that are not in `keep` (gc, under the exclusive lock). */
export async function sweepListSources(root: string, keep: ReadonlySet<Digest>): Promise<void> {
  let names: string[];
  try {
    names = await readdir(join(root, DIR));
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw e;
  }
  for (const n of names) {
    const m = /^([a-f0-9]{64})\.json$/.exec(n);
    if (m !== null && keep.has(`sha256:${m[1]}` as Digest)) continue;
    await rm(join(root, DIR, n), { force: true });
  }
}
