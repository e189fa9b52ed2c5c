import { lstatSync, type Stats } from 'node:fs';
import { check, sys } from './libc.js';

/** File type bits of st_mode (sys/stat.h). */
export const S_IFMT = 0o170000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

export function makedev(major: number, minor: number): bigint {
  // glibc's gnu_dev_makedev
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

export function major(dev: number | bigint): number {
  const d = BigInt(dev);
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
}

export function minor(dev: number | bigint): number {
  const d = BigInt(dev);
  return Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
}

/** mknod(2): `mode` carries the file type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits. */
export function mknod(path: string, mode: number, devMajor = 0, devMinor = 0): void {
  check(sys().mknod(path, mode, makedev(devMajor, devMinor)), 'mknod', path);
}

/** lchown(2) that works on symlinks with ids node's fs.lchown handles too; kept for ids > 2^31. */
export function lchown(path: string, uid: number, gid: number): void {
  check(sys().lchown(path, uid >>> 0, gid >>> 0), 'lchown', path);
}

/** lstat(2), or undefined when nothing is there (ENOENT, or ENOTDIR: a parent is not a directory). */
export function lstatIfExists(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}
