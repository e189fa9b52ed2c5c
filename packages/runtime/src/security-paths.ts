import { statSync } from 'node:fs';
import { MS, mount } from '@tsbuild/linux';
import { HelperFailure } from './helper-failure.js';

/** runc's defaults (and docker's): kernel interfaces a container must not read or write. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * Inside the container, after pivot_root. A masked file gets /dev/null bound over it (reads
 * empty, writes vanish), a masked directory an empty read-only tmpfs. A read-only path is bound
 * onto itself and remounted read-only: MS_RDONLY on the bind call itself is ignored (mount(2)),
 * and the remount has to repeat the flags the kernel locks (nosuid, nodev, noexec of /proc and
 * /sys) or fails with EPERM inside a user namespace. Paths this kernel lacks are skipped.
 */
export function maskPaths(masked: readonly string[], readonly: readonly string[]): void {
  for (const p of masked) {
    const kind = kindOf(p);
    if (kind === undefined) continue;
    try {
      if (kind === 'dir') mount('tmpfs', p, 'tmpfs', MS.RDONLY, 'size=0');
      else mount('/dev/null', p, null, MS.BIND);
    } catch (e) {
      throw new HelperFailure('FAILED_PRECONDITION', `cannot mask ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  for (const p of readonly) {
    if (kindOf(p) === undefined) continue;
    const locked = /^\/(proc|sys)(\/|$)/.test(p) ? MS.NOSUID | MS.NODEV | MS.NOEXEC : 0;
    try {
      mount(p, p, null, MS.BIND | MS.REC);
      mount(null, p, null, MS.REMOUNT | MS.BIND | MS.RDONLY | locked);
    } catch (e) {
      throw new HelperFailure('FAILED_PRECONDITION', `cannot make ${p} read-only: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
}

function kindOf(p: string): 'dir' | 'file' | undefined {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file';
  } catch {
    return undefined;
  }
}
