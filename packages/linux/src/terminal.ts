import { closeSync, constants, openSync } from 'node:fs';
import { check, sys } from './libc.js';

/**
 * Pseudo-terminals for `run -t`, as runc gives a container its console: the pty comes from the
 * container's own devpts instance (so `tty` inside names /dev/pts/N of that instance), the
 * command makes the slave its controlling terminal, and the caller takes the master from the
 * helper's descriptors with pidfd_getfd(2) to relay it. ioctl numbers are asm-generic's (x86 and
 * arm64 share them).
 */
const TIOCSPTLCK = 0x40045431;
const TIOCGPTN = 0x80045430;
const TIOCSCTTY = 0x540e;
const TIOCSWINSZ = 0x5414;
const SYS_PIDFD_OPEN = 434; // the same number on every architecture (asm-generic, Linux 5.3)
const SYS_PIDFD_GETFD = 438; // Linux 5.6

/**
 * A new pty from the devpts instance that /dev/ptmx and /dev/pts name in this mount namespace:
 * the master (close-on-exec) and the slave, unlocked, neither made anyone's controlling terminal.
 */
export function openPty(): { master: number; slave: number; path: string } {
  // libuv opens every file close-on-exec, so the master never reaches the command.
  const master = openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY);
  try {
    const arg = new Int32Array(1);
    check(sys().ioctl(master, TIOCSPTLCK, arg), 'ioctl TIOCSPTLCK', '/dev/ptmx');
    check(sys().ioctl(master, TIOCGPTN, arg), 'ioctl TIOCGPTN', '/dev/ptmx');
    const path = `/dev/pts/${arg[0]}`;
    const slave = openSync(path, constants.O_RDWR | constants.O_NOCTTY);
    return { master, slave, path };
  } catch (e) {
    closeSync(master);
    throw e;
  }
}

/**
 * setsid(2), then TIOCSCTTY: the process leads a new session whose controlling terminal is `fd`
 * (a pty slave), so the shell it runs gets job control and ^C reaches its foreground group.
 */
export function becomeSessionLeader(fd: number): void {
  check(sys().setsid(), 'setsid');
  check(sys().ioctl(fd, TIOCSCTTY, null), 'ioctl TIOCSCTTY');
}

/** TIOCSWINSZ: the terminal's size in rows and columns, as the program behind it reads it. */
export function setWindowSize(fd: number, rows: number, cols: number): void {
  const ws = new Uint16Array([rows, cols, 0, 0]);
  check(sys().ioctl(fd, TIOCSWINSZ, ws), 'ioctl TIOCSWINSZ');
}

/**
 * A copy, in this process, of descriptor `fd` of process `pid` (pidfd_open + pidfd_getfd; needs
 * the right to ptrace it, as root has). Close-on-exec, as pidfd_getfd makes it.
 */
export function takeDescriptor(pid: number, fd: number): number {
  const pidfd = check(sys().syscall(SYS_PIDFD_OPEN, 'int', pid, 'unsigned int', 0), 'pidfd_open');
  try {
    return check(sys().syscall(SYS_PIDFD_GETFD, 'int', pidfd, 'int', fd, 'unsigned int', 0), 'pidfd_getfd');
  } finally {
    closeSync(pidfd);
  }
}
