import { check, sys } from './libc.js';

// utimensat(2) with nanosecond timestamps, which node:fs cannot set exactly: fs.lutimes takes
// seconds as a double, and a double near 1.7e9 s only resolves ~240 ns.

/** dirfd meaning "relative to the current directory" (fcntl.h). */
export const AT_FDCWD = -100;
/** Set the times of a symlink itself, not of what it points to (fcntl.h). */
export const AT_SYMLINK_NOFOLLOW = 0x100;
/** tv_nsec value that leaves that timestamp unchanged (sys/stat.h). */
export const UTIME_OMIT = (1 << 30) - 2;

/** A point in time as the kernel keeps it: whole seconds (may be negative) and 0..999 999 999 ns. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/**
 * Sets atime and mtime of `path` exactly, without following a final symlink
 * (utimensat(AT_FDCWD, path, [atime, mtime], AT_SYMLINK_NOFOLLOW)). `atime` undefined leaves
 * the access time as it is (UTIME_OMIT).
 */
export function lutimens(path: string, mtime: Timespec, atime?: Timespec): void {
  const [asec, ansec] = atime === undefined ? [0, UTIME_OMIT] : [Math.trunc(atime.sec), checkNsec(atime.nsec, path)];
  check(sys().utimensat(AT_FDCWD, path, asec, ansec, Math.trunc(mtime.sec), checkNsec(mtime.nsec, path), AT_SYMLINK_NOFOLLOW), 'utimensat', path);
}

function checkNsec(n: number, path: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 999_999_999) throw new RangeError(`utimensat ${path}: nanoseconds ${n} out of range`);
  return n;
}
