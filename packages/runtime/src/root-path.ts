import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';

/** Linux's own limit on symlinks followed in one lookup (path_resolution(7)). */
const MAX_SYMLINKS = 40;

/**
 * Resolves `path` as the kernel would if `root` were `/` (chroot semantics, what runc and BuildKit
 * call a scoped or secure join): `..` never climbs above the root and every symlink met on the way,
 * absolute or relative, is resolved inside the root. Components that do not exist are kept as
 * written. Returns the resolved path inside the root, absolute ('/opt/app'); with `followFinal`
 * false a final symlink is kept rather than followed.
 *
 * Only safe while nothing else changes the tree: the helper runs it on a rootfs mounted in its own
 * mount namespace, where no other process can swap a directory for a symlink behind its back.
 */
export function resolveInRoot(root: string, path: string, followFinal = true): string {
  let resolved: string[] = [];
  let pending = path.split('/').filter((c) => c.length > 0);
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '.') continue;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const host = hostPath(root, `/${[...resolved, c].join('/')}`);
    const last = pending.length === 0;
    let isLink = false;
    try {
      isLink = lstatSync(host).isSymbolicLink();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    if (isLink && (!last || followFinal)) {
      if (++links > MAX_SYMLINKS) {
        const err = new Error(`too many levels of symbolic links resolving ${path} in ${root}`) as NodeJS.ErrnoException;
        err.code = 'ELOOP';
        throw err;
      }
      const target = readlinkSync(host);
      if (target.startsWith('/')) resolved = [];
      pending = [...target.split('/').filter((x) => x.length > 0), ...pending];
      continue;
    }
    resolved.push(c);
  }
  return `/${resolved.join('/')}`;
}

/** The host path of an absolute, already resolved path inside `root`. */
export function hostPath(root: string, inRoot: string): string {
  return inRoot === '/' ? root : posix.join(root, inRoot);
}
