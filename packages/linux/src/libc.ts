import { constants } from 'node:os';
import { lazy } from '@tsbuild/oci';
import { koffi, libc } from './ffi.js';

/**
 * libc through koffi, declared on first use (see ffi.ts). Only what node:fs lacks lives here; each
 * wrapper turns a -1 return into an Error shaped like node's own (`code` 'EPERM', `errno`,
 * `syscall`, `path`).
 */
function declare() {
  const lib = libc();
  return {
    mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)'),
    umount2: lib.func('int umount2(const char *target, int flags)'),
    chroot: lib.func('int chroot(const char *path)'),
    mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    lgetxattr: lib.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)'),
    lsetxattr: lib.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    llistxattr: lib.func('intptr_t llistxattr(const char *path, _Out_ void *list, size_t size)'),
    lremovexattr: lib.func('int lremovexattr(const char *path, const char *name)'),
    flock: lib.func('int flock(int fd, int operation)'),
    syscall: lib.func('long syscall(long number, ...)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
    lchown: lib.func('int lchown(const char *path, uint32_t owner, uint32_t group)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
  };
}

export const sys = lazy(declare);

/**
 * Loads koffi and declares the libc functions now rather than at the first call: for a process with
 * time to spare before it (the RUN helper, while tsbuild may still be preparing its request).
 */
export function bindLibc(): void {
  sys();
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

export interface SyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export function syscallError(syscall: string, path?: string, errno = koffi().errno()): SyscallError {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  const e = new Error(`${syscall}${path !== undefined ? ` ${path}` : ''}: ${code}`) as SyscallError;
  e.code = code;
  e.errno = errno;
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  return e;
}

/** Throws a node-style error when a libc call returned a negative value. */
export function check(ret: number | bigint, syscall: string, path?: string): number {
  const n = Number(ret);
  if (n < 0) throw syscallError(syscall, path);
  return n;
}
