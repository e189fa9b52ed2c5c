import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { posix } from 'node:path';
import { S_IFBLK, S_IFCHR, S_IFIFO, copyXattrs, lstatIfExists, major, minor, mknod } from '@tsbuild/linux';
import type { CopyOp } from './helper-protocol.js';
import { HardLinks, linksOf } from '@tsbuild/linux';
import { HelperFailure } from './helper-failure.js';
import { hostPath, resolveInRoot } from './root-path.js';

/**
 * Docker's COPY and WORKDIR on a mounted rootfs at `root`, run by the helper inside its private mount
 * namespace. Destinations are resolved with the rootfs as `/` (resolveInRoot); below the resolved
 * destination every entry is created by us in a directory we created or lstat'ed, and an existing
 * symlink in the way is replaced, never followed, so nothing is written outside the rootfs.
 */
export function applyCopyOps(root: string, ops: CopyOp[]): void {
  for (const op of ops) {
    if (op.op === 'mkdir') {
      if (!op.path.startsWith('/')) throw new HelperFailure('INVALID_ARGUMENT', `mkdir: path must be absolute: ${op.path}`);
      const dir = resolveInRoot(root, op.path);
      mkdirInRoot(root, dir, { uid: op.uid, gid: op.gid, mode: op.mode });
    } else {
      copy(root, op);
    }
  }
}

interface Owner {
  uid: number;
  gid: number;
}

function copy(root: string, op: Extract<CopyOp, { op: 'copy' }>): void {
  if (!op.dest.startsWith('/')) throw new HelperFailure('INVALID_ARGUMENT', `COPY destination must be absolute: ${op.dest}`);
  if (op.sources.length === 0) throw new HelperFailure('INVALID_ARGUMENT', `COPY to ${op.dest}: no sources`);
  const sources = op.sources.map((src): [string, Stats] => {
    try {
      return [src, lstatSync(src)];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new HelperFailure('NOT_FOUND', `COPY source not found: ${src}`);
      throw e;
    }
  });
  const dest = resolveInRoot(root, op.dest);
  const destStat = lstatIfExists(hostPath(root, dest));
  const intoDir = op.dest.endsWith('/') || op.sources.length > 1 || destStat?.isDirectory() === true;
  const owner = { uid: op.uid, gid: op.gid };
  const groups = new Map<number, HardLinks>();
  for (const [i, [src, st]] of sources.entries()) {
    // Directories the copy creates on the way to dest get uid:gid; the copied entries keep theirs if asked.
    const entryOwner = op.keepOwners?.[i] === true ? undefined : owner;
    const links = linksOf(op, i, groups);
    try {
      if (st.isDirectory()) {
        mkdirInRoot(root, dest, { ...owner, mode: op.mode ?? 0o755 });
        const destHost = hostPath(root, dest);
        for (const name of readdirSync(src)) copyEntry(posix.join(src, name), posix.join(destHost, name), entryOwner, op.mode, links);
      } else if (intoDir) {
        mkdirInRoot(root, dest, { ...owner, mode: 0o755 });
        copyEntry(src, posix.join(hostPath(root, dest), posix.basename(src)), entryOwner, op.mode, links, st);
      } else {
        mkdirInRoot(root, posix.dirname(dest), { ...owner, mode: 0o755 });
        copyEntry(src, hostPath(root, dest), entryOwner, op.mode, links, st);
      }
    } catch (e) {
      if (e instanceof HelperFailure) throw e;
      throw new HelperFailure('FAILED_PRECONDITION', `COPY ${src} to ${op.dest}: ${(e as Error).message.replaceAll(root, '')}`);
    }
  }
}

/**
 * mkdir -p inside the rootfs: each missing component is created owned by `owner`, the last one
 * with `mode` and its parents 0755 (Docker's WORKDIR and COPY). Existing directories are kept as
 * they are; a non-directory in the way is an error.
 */
function mkdirInRoot(root: string, dir: string, opts: Owner & { mode: number }): void {
  const parts = dir.split('/').filter((c) => c.length > 0);
  for (let i = 1; i <= parts.length; i++) {
    // Re-resolve each prefix: a component that exists may be a symlink to elsewhere in the rootfs.
    const inRoot = resolveInRoot(root, `/${parts.slice(0, i).join('/')}`);
    const host = hostPath(root, inRoot);
    const st = lstatIfExists(host);
    if (st?.isDirectory()) continue;
    if (st !== undefined) throw new HelperFailure('FAILED_PRECONDITION', `cannot create directory ${inRoot}: a file of that name exists in the rootfs`);
    const mode = i === parts.length ? opts.mode : 0o755;
    mkdirSync(host, { mode });
    lchownSync(host, opts.uid, opts.gid);
    chmodSync(host, mode); // mkdir(2) applies the umask
  }
}

/**
 * Copies one source entry (never following a symlink) to `dest`, owned by `owner` (by the source's
 * own owner when undefined), a path whose parent is a real
 * directory inside the rootfs. Directories merge into an existing directory; anything else
 * replaces what is there (Docker: "the only exception is when both are directories").
 */
function copyEntry(src: string, dest: string, owner: Owner | undefined, mode: number | undefined, links: HardLinks, st = lstatSync(src), fresh = false): void {
  // In a directory this copy just made nothing exists yet: no lookup (on overlayfs a miss is a
  // lookup in every layer below).
  const existing = fresh ? undefined : lstatIfExists(dest);
  const uid = owner?.uid ?? st.uid;
  const gid = owner?.gid ?? st.gid;
  if (st.isDirectory()) {
    if (existing !== undefined && !existing.isDirectory()) unlinkSync(dest);
    const made = existing === undefined || !existing.isDirectory();
    if (made) mkdirSync(dest, { mode: 0o700 });
    for (const name of readdirSync(src)) copyEntry(posix.join(src, name), posix.join(dest, name), owner, mode, links, undefined, made);
  } else {
    if (existing?.isDirectory()) rmSync(dest, { recursive: true, force: true });
    else if (existing !== undefined) unlinkSync(dest);
    if (st.isFile() && links.linked(st, dest)) return; // the inode has its owner, mode, xattrs and times already
    if (st.isFile() && st.size <= SMALL_FILE) {
      copySmallFile(src, dest, st, uid, gid, mode ?? st.mode & 0o7777);
      links.copied(st, dest);
      return;
    }
    if (st.isFile()) copyFileSync(src, dest, constants.COPYFILE_EXCL);
    else if (st.isSymbolicLink()) symlinkSync(readlinkSync(src), dest);
    else if (st.isFIFO()) mknod(dest, S_IFIFO | 0o600);
    else if (st.isCharacterDevice()) mknod(dest, S_IFCHR | 0o600, major(st.rdev), minor(st.rdev));
    else if (st.isBlockDevice()) mknod(dest, S_IFBLK | 0o600, major(st.rdev), minor(st.rdev));
    else return; // a socket has no meaning in an image: Docker skips it too
  }
  lchownSync(dest, uid, gid);
  // chown(2) clears set-user-ID and set-group-ID bits, so the mode comes after the owner.
  if (!st.isSymbolicLink()) chmodSync(dest, mode ?? st.mode & 0o7777);
  copyXattrs(src, dest);
  if (st.isFile()) links.copied(st, dest);
  // Last: creating children changed the directory's mtime.
  lutimesSync(dest, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/** Files up to this size are read whole and written through one descriptor (see copySmallFile). */
const SMALL_FILE = 1 << 20;

/**
 * A regular file of at most SMALL_FILE bytes: created O_EXCL (never through a link), then written,
 * chowned, chmodded and timed through its descriptor, so the destination path is looked up once
 * instead of five times (measured: a COPY of 10,000 small files spends most of its time in such
 * lookups on the overlay). Same order as for other entries: owner, then mode (chown clears
 * set-id bits), xattrs, times last.
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

