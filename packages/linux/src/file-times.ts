import { lazy } from '@tsbuild/oci';
import { koffi, libc } from './ffi.js';
import { check } from './libc.js';

/**
 * utimensat(2) with nanosecond timestamps, which node:fs cannot set exactly: fs.lutimes takes
 * seconds as a double, and a double near 1.7e9 s only resolves ~240 ns. Declared here with its
 * own handle on libc (libc.ts holds the shared declarations; koffi returns the same library).
 */
const utimensat = lazy(() => {
  const k = koffi();
  // struct timespec { time_t tv_sec; long tv_nsec; }: time_t is a long on the 64-bit Linux ABIs.
  // Types without names: koffi's names are global, and a second copy of this module (two command
  // bundles loaded by `tsbuild --help`) would define them again.
  const timespec = k.struct({ tv_sec: 'long', tv_nsec: 'long' });
  // `const struct timespec times[2]`: two timespecs back to back, passed as one struct pointer.
  const timespecPair = k.struct({ atime: timespec, mtime: timespec });
  return libc().func('utimensat', 'int', ['int', 'const char *', k.pointer(timespecPair), 'int']);
});

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
  const times = {
    atime: atime === undefined ? { tv_sec: 0, tv_nsec: UTIME_OMIT } : { tv_sec: Math.trunc(atime.sec), tv_nsec: checkNsec(atime.nsec, path) },
    mtime: { tv_sec: Math.trunc(mtime.sec), tv_nsec: checkNsec(mtime.nsec, path) },
  };
  check(utimensat()(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), 'utimensat', path);
}

function checkNsec(n: number, path: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 999_999_999) throw new RangeError(`utimensat ${path}: nanoseconds ${n} out of range`);
  return n;
}
