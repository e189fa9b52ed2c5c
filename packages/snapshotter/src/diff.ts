import type { BigIntStats } from 'node:fs';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { getXattr, listXattrs, major, minor } from '@tsbuild/linux';
import { FailedPreconditionError } from '@tsbuild/oci';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from './tar-format.js';
import { isHostOnlyXattr, isOverlayWhiteout, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, USER_OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX } from './whiteout.js';

export interface TarOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it, for reproducible layers. */
  sourceDateEpoch?: number;
}

/** The layer tar of an active snapshot's changes, read from its upperdir. */
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

/** Output is gathered into chunks of about this size (512 KiB): one stream hop per chunk, not per entry. */
const CHUNK = 512 << 10;
/** Large files are read in pieces of this size, each handed on as its own chunk. */
const READ_PIECE = 1 << 20;

/**
 * Walks `root` depth-first (a directory before its children, children in bytewise order of
 * their names on disk, so a whiteout `.wh.x` sits where `x` would) and yields tar bytes. Entry
 * names are relative, without './'; directories end in '/'. Only seconds of mtime are written,
 * like Docker and containerd, so that a layer's digest does not depend on the filesystem's
 * timestamp granularity.
 *
 * Speed: filesystem calls are synchronous (lstat once per entry; a small file is opened, read
 * straight into the output chunk with one read(2), and closed), and headers and small bodies
 * are packed into 512 KiB chunks, so the walk costs a few syscalls per entry and one stream hop
 * per chunk. The generator yields after every chunk, so the event loop (and the consumer, e.g.
 * gzip on the libuv pool) keeps running; memory stays at a few chunks.
 */
async function* treeTar(root: string, overlay: boolean, opts: TarOptions | undefined): AsyncGenerator<Buffer> {
  const links = new Map<string, string>();
  const epoch = opts?.sourceDateEpoch;
  const mtimeOf = (st: BigIntStats): number => {
    const sec = Number(st.mtimeNs / 1_000_000_000n) - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1 : 0);
    return epoch !== undefined && sec > epoch ? epoch : sec;
  };

  let buf = Buffer.allocUnsafe(CHUNK);
  let used = 0;
  const full: Buffer[] = [];
  /** Hands the current chunk over and starts a new one with room for at least `need` bytes. */
  const flush = (need = 0): void => {
    if (used > 0) full.push(buf.subarray(0, used));
    buf = Buffer.allocUnsafe(Math.max(CHUNK, need));
    used = 0;
  };
  const put = (b: Buffer): void => {
    if (used + b.length > buf.length) flush(b.length);
    b.copy(buf, used);
    used += b.length;
  };
  const zeros = (n: number): void => {
    if (used + n > buf.length) flush(n);
    buf.fill(0, used, used + n);
    used += n;
  };

  /** Appends a regular file's body (and padding), read with as few read(2) calls as possible. */
  const body = (p: string, size: number): void => {
    const fd = openSync(p, 'r');
    try {
      let read = 0;
      if (size + padding(size) <= CHUNK) {
        if (used + size + padding(size) > buf.length) flush();
        while (read < size) {
          const n = readSync(fd, buf, used + read, size - read, read);
          if (n === 0) break;
          read += n;
        }
        used += read;
      } else {
        flush();
        while (read < size) {
          const piece = Buffer.allocUnsafe(Math.min(READ_PIECE, size - read));
          let got = 0;
          while (got < piece.length) {
            const n = readSync(fd, piece, got, piece.length - got, read + got);
            if (n === 0) break;
            got += n;
          }
          read += got;
          full.push(got === piece.length ? piece : piece.subarray(0, got));
          if (got < piece.length) break;
        }
      }
      if (read !== size) throw new FailedPreconditionError(`file ${p} shrank from ${size} to ${read} bytes while being read into a layer`);
    } finally {
      closeSync(fd);
    }
    zeros(padding(size));
  };

  /** Appends one entry; true for a directory whose contents come next. */
  const entry = (p: string, name: string, st: BigIntStats): boolean => {
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
      put(encodeHeader({ ...base, name: name.slice(0, slash + 1) + WHITEOUT_PREFIX + name.slice(slash + 1), type: 'file', mode: 0 }));
      return false;
    }
    if (st.isSocket()) return false; // tar cannot carry sockets; they are recreated at run time
    const names = listXattrs(p);
    let opaque = false;
    for (const n of names) {
      if (isHostOnlyXattr(n)) {
        if (overlay && st.isDirectory() && (n === OVERLAY_OPAQUE_XATTR || n === USER_OVERLAY_OPAQUE_XATTR)) opaque ||= getXattr(p, n)?.toString() === 'y';
        continue;
      }
      const v = getXattr(p, n);
      if (v !== undefined) base.xattrs.set(n, v);
    }
    if (st.isDirectory()) {
      put(encodeHeader({ ...base, name: `${name}/`, type: 'dir' }));
      // The marker carries the directory's permission bits and owner and mtime 0, as buildah
      // (containers/storage) writes it, so a RUN that replaces a directory gives the same layer.
      if (opaque) put(encodeHeader({ ...base, name: `${name}/${OPAQUE_MARKER}`, type: 'file', mode: base.mode & 0o777, mtime: 0, xattrs: new Map() }));
      return true;
    }
    if (st.nlink > 1n) {
      const inode = `${st.dev}:${st.ino}`;
      const first = links.get(inode);
      if (first !== undefined) {
        put(encodeHeader({ ...base, name, type: 'link', linkname: first }));
        return false;
      }
      links.set(inode, name);
    }
    if (st.isSymbolicLink()) {
      put(encodeHeader({ ...base, name, type: 'symlink', linkname: readlinkSync(p) }));
    } else if (st.isFIFO()) {
      put(encodeHeader({ ...base, name, type: 'fifo' }));
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      put(encodeHeader({ ...base, name, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major(st.rdev), devminor: minor(st.rdev) }));
    } else if (st.isFile()) {
      const size = Number(st.size);
      put(encodeHeader({ ...base, name, type: 'file', size }));
      if (size > 0) body(p, size);
    }
    return false;
  };

  // Depth-first: a subdirectory's contents follow its own entry, before its next sibling. The
  // sync walk hands over whatever chunks filled up after each entry.
  const walk = function* (dirPath: string, rel: string): Generator<Buffer[]> {
    for (const n of sortedNames(dirPath)) {
      const p = join(dirPath, n);
      const isDir = entry(p, rel + n, lstatSync(p, { bigint: true }));
      if (full.length > 0) yield full.splice(0);
      if (isDir) yield* walk(p, `${rel}${n}/`);
    }
  };

  for (const chunks of walk(root, '')) yield* chunks;
  put(END_OF_ARCHIVE);
  flush();
  yield* full.splice(0);
}

/** Names in a directory in bytewise (UTF-8) order, which is what the tar entry order promises. */
function sortedNames(dir: string): string[] {
  const names = readdirSync(dir);
  // For ASCII, JavaScript's UTF-16 order is the byte order; otherwise compare the UTF-8 bytes.
  if (names.every((n) => /^[\x00-\x7f]*$/.test(n))) return names.sort();
  return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
