import { posix } from 'node:path';
import { resolvePathInRoot } from '@tsbuild/linux';
import { joinParts } from '@tsbuild/oci';

/**
 * Resolves `path` as the kernel would if `root` were `/` (the one in-root rule, inRootWalk of
 * @tsbuild/oci, walked through descriptors by resolvePathInRoot of @tsbuild/linux): `..` never
 * climbs above the root and every symlink met on the way, absolute or relative, is resolved inside
 * the root. Components that do not exist are kept as written. Returns the resolved path inside the
 * root, absolute ('/opt/app'); with `followFinal` false a final symlink is kept rather than followed.
 */
export function resolveInRoot(root: string, path: string, followFinal = true): string {
  return joinParts(resolvePathInRoot(root, path, followFinal));
}

/** The host path of an absolute, already resolved path inside `root`. */
export function hostPath(root: string, inRoot: string): string {
  return inRoot === '/' ? root : posix.join(root, inRoot);
}
