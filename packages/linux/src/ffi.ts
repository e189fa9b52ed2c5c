import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lazy } from '@tsbuild/oci';

/**
 * tsbuild's libc addon (src/native.c, built into dist/linux.node): one function per call, each
 * returning what the kernel returned or -errno, never throwing for a failed call. The callers
 * turn a negative result into a node-style error (libc.ts `check`).
 */
export interface Native {
  flock(fd: number, operation: number): number;
  flockAsync(fd: number, operation: number, callback: (err: null, result: number) => void): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): number;
  umount2(target: string, flags: number): number;
  chroot(path: string): number;
  mknod(path: string, mode: number, dev: bigint): number;
  lchown(path: string, uid: number, gid: number): number;
  /** The value's size with `value` null; otherwise the bytes read into it. */
  lgetxattr(path: string, name: string, value: Uint8Array | null): number;
  lsetxattr(path: string, name: string, value: Uint8Array, flags: number): number;
  llistxattr(path: string, list: Uint8Array | null): number;
  lremovexattr(path: string, name: string): number;
  /** `how`: struct open_how. */
  openat2(dirfd: number, path: string, how: Uint8Array): number;
  openTree(dirfd: number, path: string, flags: number): number;
  /** `attr`: struct mount_attr. */
  mountSetattr(fd: number, path: string, flags: number, attr: Uint8Array): number;
  pidfdOpen(pid: number, flags: number): number;
  pidfdGetfd(pidfd: number, fd: number, flags: number): number;
  /** BPF_PROG_LOAD; `license` ends with a NUL byte, `log` only with `logLevel` > 0. */
  bpfProgLoad(type: number, instructions: Uint8Array, license: Uint8Array, log: Uint8Array | null, logLevel: number): number;
  bpfProgAttach(targetFd: number, progFd: number, attachType: number, flags: number): number;
  ioctl(fd: number, request: number, arg: Uint8Array | Uint16Array): number;
  capget(header: Uint8Array, data: Uint8Array): number;
  utimensat(dirfd: number, path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): number;
  /** [fd, fd], or -errno. */
  socketpair(domain: number, type: number, protocol: number): [number, number] | number;
  /** [result or -errno, status]. */
  waitpid(pid: number, options: number): [number, number];
  /** posix_spawn(3) with `fds[k]` as the child's descriptor k: its pid, or -errno. */
  spawn(path: string, argv: string[], envp: string[], fds: number[], setsid: boolean): number;
  exit(code: number): never;
}

/**
 * Where the bundle put the addon relative to itself (TSBUILD_LINUX_ADDON, set by the CLI's and the
 * copy helper's bundle scripts); in dist/ it is this module's neighbour (see `unbundled`).
 */
declare const TSBUILD_LINUX_ADDON: string | undefined;

/**
 * The addon, loaded on first use: a command that never calls into libc does not pay for it, and
 * one that locks the store loads it only when it takes the lock (push and pull have sent their
 * first requests to the registry by then). process.dlopen, not require: no module resolution.
 */
export const native = lazy((): Native => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const file = typeof TSBUILD_LINUX_ADDON === 'string' ? path.resolve(here, TSBUILD_LINUX_ADDON) : unbundled(here);
  const module = { exports: {} as Native };
  try {
    process.dlopen(module, file);
  } catch (e) {
    throw new Error(`cannot load tsbuild's libc addon ${file} (build @tsbuild/linux): ${(e as Error).message}`, { cause: e });
  }
  (globalThis as Record<symbol, unknown>)[EXIT_NOW] = module.exports.exit;
  return module.exports;
});

/** dist/linux.node from dist/ffi.js, and from src/ffi.ts (the tests run the sources). */
function unbundled(here: string): string {
  const beside = path.join(here, 'linux.node');
  return existsSync(beside) ? beside : path.join(here, '..', 'dist', 'linux.node');
}

/**
 * Where the addon is loaded, the CLI (bin/run.cjs) ends a command that succeeded with `_exit(2)`
 * once node's own 'exit' listeners have run, instead of node's exit: that joins V8's and libuv's
 * threads and runs the C library's exit handlers, ~1.5 ms a command here (31 interleaved runs of
 * the from/run/commit script: 408.0 → 403.6 ms). Nothing is lost: on Linux node writes stdout and
 * stderr synchronously, and the 'exit' listeners (code caches, a started run's release) have run
 * by then. Set only where the addon is loaded already: loading it to exit would cost more.
 */
const EXIT_NOW = Symbol.for('tsbuild.exit-now');
