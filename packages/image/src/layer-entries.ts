import type { Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { DataLossError, InvalidArgumentError, isTsbuildError, type Digest, crypto } from '@tsbuild/oci';
import { TarParser, decompressed, type TarType } from '@tsbuild/snapshotter';
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

const TYPES: Record<TarType, EntryType> = { file: 'file', dir: 'dir', symlink: 'symlink', link: 'hardlink', char: 'char', block: 'block', fifo: 'fifo' };

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
 * the file sizes. The tar is read by the snapshotter's parser, as export and apply read it.
 */
export async function scanLayerTar(src: Readable, where: string, opts: { hashes?: boolean } = {}): Promise<LayerEntry[]> {
  const hashes = opts.hashes ?? true;
  const entries: LayerEntry[] = [];
  let hashing: { meta: FileMeta; hash: Hash } | undefined;
  const parser = new TarParser({
    entry(h) {
      const path = normalisePath(h.name);
      const base = path.slice(path.lastIndexOf('/') + 1);
      const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
      if (base === OPAQUE_MARKER) entries.push({ kind: 'opaque', path: dir });
      else if (base.startsWith(WHITEOUT_PREFIX)) entries.push({ kind: 'whiteout', path: dir === '' ? base.slice(WHITEOUT_PREFIX.length) : `${dir}/${base.slice(WHITEOUT_PREFIX.length)}` });
      else if (path !== '') {
        const type = TYPES[h.type];
        const meta: FileMeta = { path, type, size: type === 'file' ? h.size : 0, mode: h.mode, uid: h.uid, gid: h.gid };
        if (type === 'symlink') meta.linkname = h.linkname;
        if (type === 'hardlink') meta.linkname = normalisePath(h.linkname);
        entries.push({ kind: 'file', meta });
        if (hashes && type === 'file') hashing = { meta, hash: crypto().createHash('sha256') };
      }
    },
    data(chunk) {
      hashing?.hash.update(chunk);
    },
    end() {
      if (hashing !== undefined) hashing.meta.sha256 = `sha256:${hashing.hash.digest('hex')}`;
      hashing = undefined;
    },
  });
  try {
    for await (const chunk of src) parser.push(chunk as Buffer);
    parser.finish();
  } catch (e) {
    src.destroy();
    if (isTsbuildError(e) && !(e instanceof InvalidArgumentError)) throw e;
    throw new DataLossError(`${where}: ${(e as Error).message}`, { cause: e });
  }
  return entries;
}
