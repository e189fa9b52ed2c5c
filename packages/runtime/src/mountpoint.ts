import { closeSync, constants } from 'node:fs';
import { posix } from 'node:path';
import { O_PATH, RESOLVE, mkdirAllInRoot, openat2, withFd } from '@tsbuild/linux';
import { HelperFailure } from './helper-failure.js';

/**
 * A descriptor of the mountpoint at `dest` (already resolved inside the rootfs whose host path is
 * `root`), created if missing: a directory, or for a file source an empty file. Everything is made
 * and opened through the parent directory's descriptor without following any link, so what the
 * caller mounts onto (as /proc/self/fd/N) is the entry inside the rootfs: RUN --mount targets and
 * the bound /etc files alike. An existing entry is used as it is (a read-only rootfs still works);
 * a directory where a file is wanted is returned too, for the caller to refuse or skip.
 */
export function mountpointFd(root: string, dest: string, file: boolean): number {
  try {
    if (!file) return mkdirAllInRoot(root, dest);
    const name = posix.basename(dest);
    return withFd(mkdirAllInRoot(root, posix.dirname(dest)), (dir) => {
      const open = () => openat2(dir, name, O_PATH | constants.O_NOFOLLOW, RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS);
      try {
        return open();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      closeSync(openat2(dir, name, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS, 0o644));
      return open();
    });
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot create mountpoint ${dest} in the rootfs (read-only?): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}
