import { closeSync } from 'node:fs';
import { check, sys } from './libc.js';

/**
 * Pseudo-terminals for `run -t`, as runc gives a container its console: the run helper opens the
 * pty from the container's own devpts instance (so `tty` inside names /dev/pts/N of that
 * instance) and makes the slave the command's controlling terminal; tsbuild takes the master from
 * the helper's descriptors with pidfd_getfd(2) to relay it. ioctl numbers are asm-generic's (x86
 * and arm64 share them).
 */
const TIOCSWINSZ = 0x5414;

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
  const pidfd = check(sys().pidfdOpen(pid, 0), 'pidfd_open');
  try {
    return check(sys().pidfdGetfd(pidfd, fd, 0), 'pidfd_getfd');
  } finally {
    closeSync(pidfd);
  }
}
