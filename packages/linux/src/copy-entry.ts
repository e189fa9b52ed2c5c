import {
  type Stats,
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lutimesSync,
  openSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { S_IFBLK, S_IFCHR, S_IFIFO, major, minor, mknod } from './nodes.js';
import { copyXattrs } from './xattr.js';

/** Files up to this size are read whole and written through one descriptor (see copySmallFile). */
const SMALL_FILE = 1 << 20;

/**
 * COPY's one rule for a non-directory entry, shared by both writers (the helper's on the mounted
 * rootfs, the direct one into an upperdir): `src` (lstat'ed as `st`, never followed) is made at
 * `dest`, which must not exist, owned by uid:gid with `mode`, its xattrs and times kept. Returns
 * false for a socket, which is not copied (Docker skips it too).
 */
export function copyNode(src: string, dest: string, st: Stats, uid: number, gid: number, mode: number): boolean {
  if (st.isFile() && st.size <= SMALL_FILE) {
    copySmallFile(src, dest, st, uid, gid, mode);
    return true;
  }
  if (st.isFile()) copyFileSync(src, dest, constants.COPYFILE_EXCL);
  else if (st.isSymbolicLink()) symlinkSync(readlinkSync(src), dest);
  else if (st.isFIFO()) mknod(dest, S_IFIFO | 0o600);
  else if (st.isCharacterDevice()) mknod(dest, S_IFCHR | 0o600, major(st.rdev), minor(st.rdev));
  else if (st.isBlockDevice()) mknod(dest, S_IFBLK | 0o600, major(st.rdev), minor(st.rdev));
  else return false;
  copyMetadata(src, dest, st, uid, gid, mode);
  return true;
}

/**
 * Owner, mode, xattrs and times of a copied entry at `dest` (for a directory: after its children,
 * whose creation changed its mtime). chown(2) clears set-user-ID and set-group-ID bits and
 * security.capability, so the owner comes first; a symlink has no mode of its own.
 */
export function copyMetadata(src: string, dest: string, st: Stats, uid: number, gid: number, mode: number): void {
  lchownSync(dest, uid, gid);
  if (!st.isSymbolicLink()) chmodSync(dest, mode);
  copyXattrs(src, dest);
  lutimesSync(dest, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/**
 * A regular file of at most SMALL_FILE bytes: created O_EXCL (never through a link), then written,
 * chowned, chmodded and timed through its descriptor, so the destination path is looked up once
 * instead of five times (measured: a COPY of 10,000 small files spends most of its time in such
 * lookups on the overlay). Same order as copyMetadata.
 */
function copySmallFile(src: string, dest: string, st: Stats, uid: number, gid: number, mode: number): void {
  const data = readFileSync(src);
  const fd = openSync(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off);
    fchownSync(fd, uid, gid);
    fchmodSync(fd, mode);
    copyXattrs(src, dest);
    futimesSync(fd, st.atimeMs / 1000, st.mtimeMs / 1000);
  } finally {
    closeSync(fd);
  }
}
