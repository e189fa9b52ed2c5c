import type { BigIntStats } from 'node:fs';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { getXattr, listXattrs, major, minor } from '@tsbuild/linux';
import { FailedPreconditionError } from '@tsbuild/oci';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { BufferPool } from './buffer-pool.js';
import { END_OF_ARCHIVE, padding, type TarHeader } from './tar-format.js';
import { TarOutput } from './tar-output.js';
import { isHostOnlyXattr, isOpaqueXattr, isOverlayWhiteout, OPAQUE_MARKER, WHITEOUT_PREFIX } from './whiteout.js';

export interface TarOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it, for reproducible layers. */
  sourceDateEpoch?: number;
  /** buildah's `commit --timestamp`: every entry gets exactly this mtime (seconds since the epoch). */
  timestamp?: number;
}

/**
 * The layer tar of an active snapshot's changes, read from its upperdir. Its chunks are lent
 * from a small pool: the consumer that holds one last may hand it back for reuse (RELEASE_CHUNK,
 * buffer-pool.ts); one that never does gets fresh buffers.
 */
export function diff(s: OverlaySnapshotter, key: string, opts?: TarOptions): Readable {
  return Readable.from(
    (async function* () {
      yield* treeTar(await s.fsDir(key), true, opts);
    })(),
    { objectMode: false },
  );
}

/** A whole directory tree as one layer tar (for `tsbuild import DIR`); same entry format, no whiteout conversion. */
export function tarDirectory(dir: string, opts?: TarOptions): Readable {
  return Readable.from(treeTar(dir, false, opts), { objectMode: false });
}

/**
 * Output chunk size (512 KiB): one stream hop per chunk, not per entry. Parallel gzip copies
 * chunks into its own 1 MiB jobs, so the size only sets the hop count and the memory per chunk.
 */
export const CHUNK = 512 << 10;
/**
 * Released chunks kept for reuse. A consumer that releases (parallel gzip) holds at most a chunk
 * or two at a time, plus one in each stream stage's buffer between us; measured on the Debian
 * rootfs through ingestLayer with gzip, the pool allocates 5 buffers in all (389 chunks).
 */
export const POOL_FREE = 8;

/** The mtime a layer entry gets for an mtime of `sec` seconds: `timestamp` if set, else `sec` clamped to SOURCE_DATE_EPOCH. */
export function layerMtime(sec: number, opts: TarOptions | undefined): number {
  if (opts?.timestamp !== undefined) return opts.timestamp;
  const epoch = opts?.sourceDateEpoch;
  return epoch !== undefined && sec > epoch ? epoch : sec;
}

/**
 * Walks `root` depth-first (a directory before its children, children in bytewise order of
 * their names on disk, so a whiteout `.wh.x` sits where `x` would) and yields tar bytes. Entry
 * names are relative, without './'; directories end in '/'. Only seconds of mtime are written,
 * like Docker and containerd, so that a layer's digest does not depend on the filesystem's
 * timestamp granularity.
 *
 * Speed: filesystem calls are synchronous (lstat once per entry; a file is opened, pread(2)
 * straight into the output chunk, and closed), and headers and bodies are packed into 512 KiB
 * chunks (TarOutput), so the walk costs a few syscalls per entry and one stream hop per chunk.
 * The generator yields each chunk as it fills, also in the middle of a big file, so the event
 * loop (and the consumer, e.g. gzip on the libuv pool) keeps running.
 *
 * Memory: the chunks come from a BufferPool. A consumer that copies a chunk and releases it
 * (RELEASE_CHUNK; parallel gzip does) gets the same few buffers back over and over; for one that
 * does not, every chunk is a new buffer, as any Readable's chunks are.
 */
async function* treeTar(root: string, overlay: boolean, opts: TarOptions | undefined): AsyncGenerator<Buffer> {
  const links = new Map<string, string>();
  const mtimeOf = (st: BigIntStats): number => layerMtime(Number(st.mtimeNs / 1_000_000_000n) - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1 : 0), opts);
  const out = new TarOutput(new BufferPool(CHUNK, POOL_FREE));

  /** Appends a regular file's body and padding, handing on chunks as they fill. */
  const body = function* (p: string, size: number): Generator<Buffer, void, undefined> {
    const fd = openSync(p, 'r');
    try {
      const read = yield* out.file(fd, size);
      if (read !== size) throw new FailedPreconditionError(`file ${p} shrank from ${size} to ${read} bytes while being read into a layer`);
    } finally {
      closeSync(fd);
    }
    out.zeros(padding(size));
  };

  /** Appends one entry and hands on the chunks that filled; returns true for a directory whose contents come next. */
  const entry = function* (p: string, name: string, st: BigIntStats): Generator<Buffer, boolean, undefined> {
    const base: Omit<TarHeader, 'name' | 'type'> = {
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: 0,
      mtime: mtimeOf(st),
      linkname: '',
      devmajor: 0,
      devminor: 0,
      xattrs: new Map(),
    };
    // overlayfs whiteouts may share one inode (a hardlink to the workdir's whiteout), so
    // they are recognised before the hardlink check.
    if (overlay && isOverlayWhiteout(st)) {
      const slash = name.lastIndexOf('/');
      out.header({ ...base, name: name.slice(0, slash + 1) + WHITEOUT_PREFIX + name.slice(slash + 1), type: 'file', mode: 0 });
      return false;
    }
    if (st.isSocket()) return false; // tar cannot carry sockets; they are recreated at run time
    const names = listXattrs(p);
    let opaque = false;
    for (const n of names) {
      if (isHostOnlyXattr(n)) {
        if (overlay && st.isDirectory() && isOpaqueXattr(n)) opaque ||= getXattr(p, n)?.toString() === 'y';
        continue;
      }
      const v = getXattr(p, n);
      if (v !== undefined) base.xattrs.set(n, v);
    }
    if (st.isDirectory()) {
      out.header({ ...base, name: `${name}/`, type: 'dir' });
      // The marker carries the directory's permission bits and owner and mtime 0, as buildah
      // (containers/storage) writes it, so a RUN that replaces a directory gives the same layer.
      if (opaque) out.header({ ...base, name: `${name}/${OPAQUE_MARKER}`, type: 'file', mode: base.mode & 0o777, mtime: 0, xattrs: new Map() });
      return true;
    }
    if (st.nlink > 1n) {
      const inode = `${st.dev}:${st.ino}`;
      const first = links.get(inode);
      if (first !== undefined) {
        out.header({ ...base, name, type: 'link', linkname: first });
        return false;
      }
      links.set(inode, name);
    }
    if (st.isSymbolicLink()) {
      out.header({ ...base, name, type: 'symlink', linkname: readlinkSync(p) });
    } else if (st.isFIFO()) {
      out.header({ ...base, name, type: 'fifo' });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      out.header({ ...base, name, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major(st.rdev), devminor: minor(st.rdev) });
    } else if (st.isFile()) {
      const size = Number(st.size);
      out.header({ ...base, name, type: 'file', size });
      if (size > 0) yield* body(p, size);
    }
    return false;
  };

  // Depth-first: a subdirectory's contents follow its own entry, before its next sibling. The
  // sync walk hands over each chunk as it fills.
  const walk = function* (dirPath: string, rel: string): Generator<Buffer, void, undefined> {
    for (const n of sortedNames(readdirSync(dirPath))) {
      const p = join(dirPath, n);
      const isDir = yield* entry(p, rel + n, lstatSync(p, { bigint: true }));
      yield* out.drain();
      if (isDir) yield* walk(p, `${rel}${n}/`);
    }
  };

  for (const chunk of walk(root, '')) yield chunk;
  out.zeros(END_OF_ARCHIVE.length);
  yield* out.end();
}

/** Names of a directory's entries in bytewise (UTF-8) order, which is what the tar entry order promises (sorted in place). */
export function sortedNames(names: string[]): string[] {
  // For ASCII, JavaScript's UTF-16 order is the byte order; otherwise compare the UTF-8 bytes.
  if (names.every((n) => /^[\x00-\x7f]*$/.test(n))) return names.sort();
  return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
