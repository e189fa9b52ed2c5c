import { closeSync, readFileSync } from 'node:fs';
import { check, sys } from './libc.js';

/** mount(2) flags (linux/mount.h). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REMOUNT: 0x20,
  NOATIME: 0x400,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  STRICTATIME: 1 << 24,
} as const;

/** umount2(2) flags. */
export const MNT_DETACH = 2;

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  check(sys().mount(source, target, fstype, flags, data), 'mount', target);
}

/** mount(2) copies at most one page of data; overlay lowerdir lists of many layers exceed it. */
export const MAX_MOUNT_DATA = 4095;

/**
 * Overlay data too long for one page is shortened the way containerd does it: the mounting process
 * chdir's to the longest directory common to every layer path and passes them relative to it
 * (overlayfs resolves relative paths against the mounting process's cwd). Returns the directory
 * to chdir to, or undefined when the data fits.
 */
export function shortenOverlayData(data: string): { cwd: string; data: string } | undefined {
  if (Buffer.byteLength(data) <= MAX_MOUNT_DATA) return undefined;
  const opts = data.split(',');
  const paths: string[] = [];
  for (const o of opts) {
    const [k, v] = splitOption(o);
    if (k === 'lowerdir') paths.push(...v.split(':'));
    else if (k === 'upperdir' || k === 'workdir') paths.push(v);
  }
  if (paths.length === 0) return undefined;
  let common = paths[0].split('/').slice(0, -1);
  for (const p of paths) {
    const parts = p.split('/').slice(0, -1);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const cwd = common.join('/');
  if (cwd === '' || cwd === '/') return undefined;
  const rel = (p: string): string => (p.startsWith(`${cwd}/`) ? p.slice(cwd.length + 1) : p);
  const out = opts.map((o) => {
    const [k, v] = splitOption(o);
    if (k === 'lowerdir') return `lowerdir=${v.split(':').map(rel).join(':')}`;
    if (k === 'upperdir' || k === 'workdir') return `${k}=${rel(v)}`;
    return o;
  });
  return { cwd, data: out.join(',') };
}

function splitOption(o: string): [string, string] {
  const i = o.indexOf('=');
  return i < 0 ? [o, ''] : [o.slice(0, i), o.slice(i + 1)];
}

/**
 * mount(2) of an overlay whose data may exceed the one page the kernel copies: shortened by
 * shortenOverlayData and mounted from the directory its paths are then relative to.
 */
export function mountOverlay(source: string, target: string, flags: number, data: string): void {
  const short = shortenOverlayData(data);
  if (short === undefined) {
    mount(source, target, 'overlay', flags, data.length > 0 ? data : null);
    return;
  }
  const back = process.cwd();
  process.chdir(short.cwd);
  try {
    mount(source, target, 'overlay', flags, short.data);
  } finally {
    process.chdir(back);
  }
}

export function umount(target: string, flags = 0): void {
  check(sys().umount2(target, flags), 'umount2', target);
}

export function chroot(path: string): void {
  check(sys().chroot(path), 'chroot', path);
}

const OPEN_TREE_CLONE = 1;
const OPEN_TREE_CLOEXEC = 0o2000000; // O_CLOEXEC
const AT_EMPTY_PATH = 0x1000;
const AT_FDCWD = -100;
const MOUNT_ATTR = { RDONLY: 0x1n, NOSUID: 0x2n, NODEV: 0x4n } as const;

/**
 * A read-only, nosuid, nodev bind of one file that is attached nowhere: open_tree(2) with
 * OPEN_TREE_CLONE makes a detached copy of the mount holding `path`, limited to that file, and
 * mount_setattr(2) (Linux 5.12) makes it read-only. Returns an O_PATH, close-on-exec descriptor of
 * the file on that mount; the mount lives as long as something refers to it (this descriptor, a
 * process executing the file) and is in no mount table, so there is nothing to unmount, even
 * after kill -9. Opening the file through it, or through /proc/<pid>/exe of a process started
 * from it, for writing fails with EROFS: what runc 1.2 gets from its read-only overlay.
 */
export function readOnlyFileMount(path: string): number {
  const fd = check(sys().openTree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), 'open_tree', path);
  // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd } (linux/mount.h)
  const attr = Buffer.alloc(32);
  attr.writeBigUInt64LE(MOUNT_ATTR.RDONLY | MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV, 0);
  try {
    check(sys().mountSetattr(fd, '', AT_EMPTY_PATH, attr), 'mount_setattr', path);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

/** Mount points in this process's mount namespace (/proc/self/mountinfo field 5, octal escapes decoded). */
export function mountPoints(): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const target = line.split(' ')[4];
    if (target !== undefined) out.add(target.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}
