import { readFileSync } from 'node:fs';
import {
  DataLossError,
  InvalidArgumentError,
  formatReference,
  isDigest,
  parseReference,
  type Descriptor,
} from '@tsbuild/oci';
import { isErrno } from './content-store.js';
import { writeFileAtomic } from './fs-sync.js';

export interface ImageRecord {
  /** Fully qualified: `docker.io/library/busybox:latest`; undefined for an untagged image. */
  name?: string;
  /** The manifest (or index) the name points at. */
  descriptor: Descriptor;
}

/**
 * The name of an image as the store keys it: normalised the way docker does (`busybox` is
 * `docker.io/library/busybox:latest`). A name is a repository plus a tag; a digest is not a
 * name (the digest is already the descriptor it would point at).
 */
export function normaliseName(name: string): string {
  const ref = parseReference(name);
  if (ref.digest !== undefined) {
    throw new InvalidArgumentError(`invalid image name "${name}": a name takes a tag, not a digest`);
  }
  return formatReference(ref);
}

/**
 * images.json keys an untagged image (a build without -t, or one whose name moved to a newer
 * build, as docker's `<none>` images) by `@` and its manifest digest: never a valid name.
 */
export const UNTAGGED_PREFIX = '@';

export function untaggedKey(digest: string): string {
  return `${UNTAGGED_PREFIX}${digest}`;
}

/** On-disk shape of images.json. Versioned so a later format can be told apart. */
interface ImagesFile {
  version: 1;
  images: Record<string, Descriptor>;
}

export async function readImagesFile(path: string): Promise<Map<string, Descriptor>> {
  let text: string;
  try {
    // Read at once (a few KB): a command resolves a name first thing, and four trips through
    // the thread pool (open, fstat, read, close) cost more than the read.
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return new Map();
    throw e;
  }
  let parsed: ImagesFile;
  try {
    parsed = JSON.parse(text) as ImagesFile;
  } catch (e) {
    throw new DataLossError(`corrupt image list ${path}: ${(e as Error).message}`);
  }
  if (parsed?.version !== 1 || typeof parsed.images !== 'object' || parsed.images === null) {
    throw new DataLossError(`corrupt image list ${path}: want {"version":1,"images":{…}}`);
  }
  const out = new Map<string, Descriptor>();
  for (const [name, d] of Object.entries(parsed.images)) {
    if (typeof d !== 'object' || d === null || !isDigest(String(d.digest)) || typeof d.size !== 'number') {
      throw new DataLossError(`corrupt image list ${path}: bad descriptor for "${name}"`);
    }
    out.set(name, d);
  }
  return out;
}

export async function writeImagesFile(path: string, images: Map<string, Descriptor>): Promise<void> {
  const sorted = [...images.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body: ImagesFile = { version: 1, images: Object.fromEntries(sorted) };
  await writeFileAtomic(path, `${path}.tmp`, `${JSON.stringify(body, null, 1)}\n`);
}
