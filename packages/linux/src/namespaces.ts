import { lazy } from '@tsbuild/oci';
import { libc } from './ffi.js';
import { check } from './libc.js';

const fn = lazy(() => ({ unshare: libc().func('int unshare(int flags)') }));

/** Namespace flags of clone(2)/unshare(2) (linux/sched.h). */
export const CLONE = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
} as const;

/**
 * unshare(2) for the calling thread. In a multi-threaded process (Node always is) the kernel
 * refuses CLONE_NEWUSER (EINVAL) and the new namespace only applies to this thread: use it for
 * namespaces the thread that will execve needs, such as CLONE_NEWCGROUP after joining a cgroup.
 */
export function unshareNamespaces(flags: number): void {
  check(fn().unshare(flags), 'unshare');
}
