import { constants } from 'node:os';
import { native } from './ffi.js';

/**
 * libc through tsbuild's addon (ffi.ts), loaded on first use. Only what node:fs lacks lives
 * there; each wrapper here and beside it turns a negative result (-errno) into an Error shaped
 * like node's own (`code` 'EPERM', `errno`, `syscall`, `path`).
 */
export const sys = native;

/**
 * Loads the addon now rather than at the first call: for a process with time to spare before it
 * (the copy helper, while tsbuild may still be preparing its request).
 */
export function bindLibc(): void {
  native();
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

export interface SyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export function syscallError(syscall: string, path: string | undefined, errno: number): SyscallError {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  const e = new Error(`${syscall}${path !== undefined ? ` ${path}` : ''}: ${code}`) as SyscallError;
  e.code = code;
  e.errno = errno;
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  return e;
}

/** Throws a node-style error when a call returned -errno. */
export function check(ret: number, syscall: string, path?: string): number {
  if (ret < 0) throw syscallError(syscall, path, -ret);
  return ret;
}
