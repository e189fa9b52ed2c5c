import { createHash } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type tarStream from 'tar-stream';
import { DataLossError, isTsbuildError, type Digest } from '@tsbuild/oci';
import { decompressed } from '@tsbuild/snapshotter';
import type { Layer } from '@tsbuild/store';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** What the inspection keeps of one file: metadata and a content hash, never the content. */
export interface FileMeta {
  /** Relative to the root, no leading or trailing slash ("usr/bin/env"). */
  path: string;
  type: EntryType;
  /** Body size for regular files, 0 for everything else (a hard link's bytes belong to its target). */
  size: number;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Symlink target, or the path a hard link points at (normalised like `path`). */
  linkname?: string;
  /** sha256 of a regular file's content. */
  sha256?: Digest;
}

/**
 * One entry of a layer tar, as the image-spec (layer.md, "Whiteouts") reads it: `.wh.NAME`
 * deletes NAME from the layers below, `DIR/.wh..wh..opq` hides everything DIR held below; both
 * apply to lower layers only, never to entries of the same layer.
 */
export type LayerEntry = { kind: 'file'; meta: FileMeta } | { kind: 'whiteout'; path: string } | { kind: 'opaque'; path: string };

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

const TYPES: Record<string, EntryType | undefined> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'dir',
  symlink: 'symlink',
  link: 'hardlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** "./usr/bin/", "/usr/bin" and "usr/bin" are one path: "usr/bin"; the root is "". */
export function normalisePath(p: string): string {
  const parts: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') parts.pop();
    else parts.push(c);
  }
  return parts.join('/');
}

/** The layer tar, whatever its compression (gzip and zstd are sniffed by their magic numbers). */
export async function openLayerTar(layer: Layer): Promise<Readable> {
  return Readable.from(decompressed(await layer.compressed()), { objectMode: false });
}

/**
 * Streams a layer tar once and reports every entry with its metadata; regular files are hashed
 * on the way through (unless `hashes` is false), so memory holds one chunk at a time, whatever
 * the file sizes.
 */
export async function scanLayerTar(src: Readable, where: string, opts: { hashes?: boolean } = {}): Promise<LayerEntry[]> {
  const hashes = opts.hashes ?? true;
  const entries: LayerEntry[] = [];
  const { default: tar } = await import('tar-stream'); // loaded when used: builds share this chunk
  const extract = tar.extract();
  const consume = (async () => {
    for await (const body of extract as AsyncIterable<Readable & { header: tarStream.Header }>) {
      const h = body.header;
      const path = normalisePath(h.name);
      const base = path.slice(path.lastIndexOf('/') + 1);
      const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
      let entry: LayerEntry | undefined;
      if (base === OPAQUE_MARKER) entry = { kind: 'opaque', path: dir };
      else if (base.startsWith(WHITEOUT_PREFIX)) entry = { kind: 'whiteout', path: dir === '' ? base.slice(WHITEOUT_PREFIX.length) : `${dir}/${base.slice(WHITEOUT_PREFIX.length)}` };
      else if (path !== '') {
        const type = TYPES[h.type ?? 'file'];
        if (type === undefined) throw new DataLossError(`${where}: entry "${h.name}" has unsupported tar type ${h.type}`);
        const meta: FileMeta = { path, type, size: type === 'file' ? (h.size ?? 0) : 0, mode: (h.mode ?? 0) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0 };
        if (type === 'symlink') meta.linkname = h.linkname ?? '';
        if (type === 'hardlink') meta.linkname = normalisePath(h.linkname ?? '');
        entry = { kind: 'file', meta };
      }
      if (entry !== undefined) entries.push(entry);
      if (hashes && entry?.kind === 'file' && entry.meta.type === 'file') {
        const hash = createHash('sha256');
        for await (const c of body) hash.update(c as Buffer);
        entry.meta.sha256 = `sha256:${hash.digest('hex')}`;
      } else {
        body.resume();
        await new Promise<void>((resolve) => (body.readableEnded ? resolve() : body.once('end', resolve)));
      }
    }
  })();
  try {
    await Promise.all([pipeline(src, extract as unknown as Writable), consume]);
  } catch (e) {
    extract.destroy();
    if (isTsbuildError(e)) throw e;
    throw new DataLossError(`${where}: ${(e as Error).message}`);
  }
  return entries;
}
