import { closeSync, constants, lstatSync, openSync, readlinkSync, rmdirSync, unlinkSync, type Stats } from 'node:fs';
import { pathParts, resolveInRootSync } from '@tsbuild/oci';
import { syscallError, sys } from './libc.js';

/**
 * Paths inside a root (a build context, a rootfs, an upperdir) used by descriptor, with the
 * kernel doing the in-root walk: openat2(2) with RESOLVE_IN_ROOT resolves `..` and every
 * symlink, absolute or relative, the last component too, as if the root were `/`, and
 * RESOLVE_NO_MAGICLINKS refuses /proc's magic links (/proc/self/exe, /proc/self/fd/N, …) on the
 * way. What comes back is an O_PATH descriptor of the object itself: a bind mount, a read or a
 * mkdir made through it reaches that object even if a component is swapped for a symlink after
 * the lookup (runc CVE-2021-30465, BuildKit CVE-2024-23651). The path rule itself (for trees that
 * are not one real directory, such as a merged view of layers) is inRootWalk in @tsbuild/oci.
 */

/** open(2) flags node's fs.constants lacks (node's own opens add O_CLOEXEC through libuv). */
export const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
/** openat2(2) `resolve` flags (linux/openat2.h). */
export const RESOLVE = { NO_XDEV: 0x01, NO_MAGICLINKS: 0x02, NO_SYMLINKS: 0x04, BENEATH: 0x08, IN_ROOT: 0x10 } as const;

const EAGAIN = 11;

/**
 * openat2(2). `dirfd` may be a descriptor or a path (opened O_PATH for the call). EAGAIN, which
 * RESOLVE_IN_ROOT returns when a rename raced the lookup, is retried.
 */
export function openat2(dirfd: number, path: string, flags: number, resolve: number, mode = 0): number {
  const how = Buffer.from(new BigUint64Array([BigInt(flags | O_CLOEXEC), BigInt(mode), BigInt(resolve)]).buffer);
  for (let tries = 0; ; tries++) {
    const fd = sys().openat2(dirfd, path, how);
    if (fd >= 0) return fd;
    const errno = -fd;
    if (errno === EAGAIN && tries < 32) continue;
    throw syscallError('openat2', path, errno);
  }
}

/** An O_PATH descriptor of a root directory given by tsbuild itself (a trusted host path). */
export function openRoot(root: string): number {
  return openSync(root, O_PATH | constants.O_DIRECTORY);
}

export interface OpenInRootOptions {
  /** Follow a symlink in the last component, inside the root (default true). */
  followFinal?: boolean;
  /** open(2) flags (default O_PATH); O_CLOEXEC is always added. */
  flags?: number;
  mode?: number;
}

/**
 * Opens `p` inside `root` (a path or a descriptor of the root): `..` stops at the root and every
 * symlink resolves inside it. Errors carry node's errno `code` and name `p` as given, never a
 * host path.
 */
export function openInRoot(root: string | number, p: string, o: OpenInRootOptions = {}): number {
  const rootFd = typeof root === 'number' ? root : openRoot(root);
  try {
    const flags = (o.flags ?? O_PATH) | (o.followFinal === false ? constants.O_NOFOLLOW : 0);
    return openat2(rootFd, relative(p), flags, RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS, o.mode ?? 0);
  } catch (e) {
    throw inRootError(e, p);
  } finally {
    if (typeof root !== 'number') closeSync(rootFd);
  }
}

/** Runs `fn` with a descriptor and closes it afterwards. */
export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** The path an open descriptor refers to (for a tool that needs a path, such as a copy). */
export function fdPath(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}

/** `/proc/self/fd/N[/name]`: a path that reaches the object of descriptor N (and `name` in it, not followed). */
export function fdLink(fd: number, name?: string): string {
  return name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

/**
 * The in-root walk over a real directory: the resolved components of `p` (missing ones kept as
 * written, for a path to create). Each entry is looked at through a descriptor of its parent that
 * was opened without following any link, so the answer is about the tree inside the root only.
 */
export function resolvePathInRoot(root: string | number, p: string, followFinal = true): string[] {
  const rootFd = typeof root === 'number' ? root : openRoot(root);
  try {
    return resolveInRootSync(p, (parts) => readLinkBeneath(rootFd, parts), { followFinal });
  } finally {
    if (typeof root !== 'number') closeSync(rootFd);
  }
}

/** lstat of the entry at resolved components (undefined when missing), through its parent's descriptor. */
export function lstatBeneath(rootFd: number, parts: string[]): Stats | undefined {
  return atParent(rootFd, parts, (parentFd, name) => lstatSync(fdLink(parentFd, name)));
}

function readLinkBeneath(rootFd: number, parts: string[]): string | undefined {
  return atParent(rootFd, parts, (parentFd, name) => {
    const at = fdLink(parentFd, name);
    return lstatSync(at).isSymbolicLink() ? readlinkSync(at) : undefined;
  });
}

/**
 * Calls `fn` with a descriptor of the directory holding `parts` (opened with no symlink and no
 * `..` allowed on the way, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and the last component's name.
 * A missing entry, or one whose directory part is no longer a plain directory path, is undefined.
 */
function atParent<T>(rootFd: number, parts: string[], fn: (parentFd: number, name: string) => T): T | undefined {
  if (parts.length === 0) return fn(rootFd, '.');
  const dir = parts.slice(0, -1);
  let parentFd = rootFd;
  try {
    if (dir.length > 0) parentFd = openat2(rootFd, dir.join('/'), O_PATH | constants.O_DIRECTORY, RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS);
    return fn(parentFd, parts.at(-1)!);
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  } finally {
    if (parentFd !== rootFd) closeSync(parentFd);
  }
}

/**
 * Removes the entry at `p` below `root` if it is an empty directory or an empty regular file (a
 * mountpoint tsbuild made), walking no symlink and no `..`: when anything on the way has become a
 * link (a RUN may have replaced a directory with one), the path no longer names what tsbuild made
 * and nothing is removed. Returns whether something was removed.
 */
export function removeEmptyBeneath(root: string, p: string): boolean {
  const parts = pathParts(p);
  if (parts.length === 0 || parts.includes('..')) return false;
  return withFd(openRoot(root), (rootFd) =>
    atParent(rootFd, parts, (parentFd, name) => {
      const at = fdLink(parentFd, name);
      const st = lstatSync(at);
      try {
        if (st.isDirectory()) rmdirSync(at);
        else if (st.isFile() && st.size === 0) unlinkSync(at);
        else return false;
        return true;
      } catch {
        return false; // not empty: the command put something there, and it stays
      }
    }) ?? false,
  );
}

function relative(p: string): string {
  const parts = pathParts(p);
  return parts.length === 0 ? '.' : parts.join('/');
}

/** Missing, or (ELOOP, EXDEV under RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH) no longer a plain path of directories. */
function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EXDEV';
}

/** The error of an in-root lookup, naming the path as given inside its root (never the host path). */
function inRootError(e: unknown, p: string): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === undefined) return e as Error;
  const what = code === 'ENOENT' ? 'no such file or directory' : code === 'ELOOP' ? 'too many levels of symbolic links, or a link /proc does not allow' : code === 'EXDEV' ? 'the path leaves its root' : code.toLowerCase();
  const err = new Error(`${p}: ${what}`) as NodeJS.ErrnoException;
  err.code = code;
  err.path = p;
  return err;
}
