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
  check(sys.mount(source, target, fstype, flags, data), 'mount', target);
}

export function umount(target: string, flags = 0): void {
  check(sys.umount2(target, flags), 'umount2', target);
}

const SYS_PIVOT_ROOT: Record<string, number> = { x64: 155, arm64: 41, riscv64: 41, loong64: 41, ia32: 217, arm: 218, s390x: 217, ppc64: 203 };

/** pivot_root(2); glibc has no wrapper. `pivotRoot('.', '.')` stacks the old root under the new one. */
export function pivotRoot(newRoot: string, putOld: string): void {
  const nr = SYS_PIVOT_ROOT[process.arch];
  if (nr === undefined) throw new Error(`pivot_root: unsupported architecture ${process.arch}`);
  check(sys.syscall(nr, 'const char *', newRoot, 'const char *', putOld), 'pivot_root', newRoot);
}

export function chroot(path: string): void {
  check(sys.chroot(path), 'chroot', path);
}

export function sethostname(name: string): void {
  check(sys.sethostname(name, Buffer.byteLength(name)), 'sethostname');
}
