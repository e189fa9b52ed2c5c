import { endianness } from 'node:os';
import { lazy } from '@tsbuild/oci';
import { koffi, libc } from './ffi.js';
import { check, sys } from './libc.js';

/**
 * The calls a process needs to become a container's command: credentials, descriptor hygiene,
 * a loopback interface and execve(2). They are used by a fresh, single-purpose process (the
 * runtime's helper), never by a long-lived Node process: setuid/execve affect the whole process.
 */
const fn = lazy(() => {
  const lib = libc();
  return {
    execve: lib.func('int execve(const char *path, const char **argv, const char **envp)'),
    setgroups: lib.func('int setgroups(size_t size, const uint32_t *list)'),
    setresuid: lib.func('int setresuid(uint32_t ruid, uint32_t euid, uint32_t suid)'),
    setresgid: lib.func('int setresgid(uint32_t rgid, uint32_t egid, uint32_t sgid)'),
    recv: lib.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    close: lib.func('int close(int fd)'),
    dup2: lib.func('int dup2(int oldfd, int newfd)'),
  };
});

/**
 * execve(2). Returns only on failure, by throwing (code ENOENT, EACCES, ENOEXEC...). koffi turns
 * each JS array into a NULL-terminated `char *[]` only if the array itself ends with null.
 */
export function execve(path: string, argv: string[], envp: string[]): never {
  check(fn().execve(path, [...argv, null], [...envp, null]), 'execve', path);
  throw new Error(`execve ${path} returned`);
}

/** dup2(2): `newfd` becomes a copy of `oldfd`, without close-on-exec. */
export function dup2(oldfd: number, newfd: number): void {
  check(fn().dup2(oldfd, newfd), 'dup2');
}

/** setgroups(2): the supplementary groups; glibc applies it to every thread of the process. */
export function setGroups(gids: number[]): void {
  const list = Uint32Array.from(gids);
  check(fn().setgroups(list.length, list.length > 0 ? list : null), 'setgroups');
}

/** setresgid(2)/setresuid(2): real, effective and saved ids at once, so none can be regained. */
export function setResGid(gid: number): void {
  check(fn().setresgid(gid >>> 0, gid >>> 0, gid >>> 0), 'setresgid');
}
export function setResUid(uid: number): void {
  check(fn().setresuid(uid >>> 0, uid >>> 0, uid >>> 0), 'setresuid');
}

const SYS_CLOSE_RANGE = 436; // the same number on every architecture (asm-generic, Linux 5.9)
const CLOSE_RANGE_CLOEXEC = 4; // Linux 5.11

/**
 * Marks every descriptor >= `first` close-on-exec without closing it: the running process keeps
 * using them (Node's event loop has several), but none reaches the program it execve's.
 */
export function cloexecFrom(first: number): void {
  check(sys().syscall(SYS_CLOSE_RANGE, 'unsigned int', first, 'unsigned int', 0xffffffff, 'unsigned int', CLOSE_RANGE_CLOEXEC), 'close_range');
}

const MSG_PEEK = 2;
const MSG_DONTWAIT = 0x40;

/**
 * True when the other end of a connected stream socket is closed (recv returns 0 at EOF), without
 * blocking or consuming data. A process uses it to learn its peer died while it was not looking.
 */
export function peerClosed(fd: number): boolean {
  const buf = Buffer.alloc(1);
  const n = Number(fn().recv(fd, buf, 1, MSG_PEEK | MSG_DONTWAIT));
  if (n >= 0) return n === 0;
  const errno = koffi().errno();
  if (errno === 11) return false; // EAGAIN: open, nothing to read
  check(n, 'recv');
  return false;
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 0x1;

/**
 * Brings a network interface up (netdevice(7): SIOCGIFFLAGS/SIOCSIFFLAGS on a struct ifreq of
 * 40 bytes: a 16-byte name, then `short ifr_flags`). A fresh network namespace has `lo` down.
 */
export function setLinkUp(name: string): void {
  if (Buffer.byteLength(name) > 15) throw new Error(`interface name too long: ${name}`);
  const fd = check(fn().socket(AF_INET, SOCK_DGRAM, 0), 'socket');
  try {
    const ifr = Buffer.alloc(40);
    ifr.write(name, 0, 'utf8');
    check(sys().ioctl(fd, SIOCGIFFLAGS, ifr), 'ioctl SIOCGIFFLAGS', name);
    // ifr_flags is a native-endian short
    if (endianness() === 'LE') ifr.writeUInt16LE(ifr.readUInt16LE(16) | IFF_UP, 16);
    else ifr.writeUInt16BE(ifr.readUInt16BE(16) | IFF_UP, 16);
    check(sys().ioctl(fd, SIOCSIFFLAGS, ifr), 'ioctl SIOCSIFFLAGS', name);
  } finally {
    fn().close(fd);
  }
}
