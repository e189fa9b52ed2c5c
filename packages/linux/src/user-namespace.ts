import { readFileSync } from 'node:fs';

/** CAP_SYS_ADMIN's bit in the capability sets (linux/capability.h). */
export const CAP_SYS_ADMIN = 21;

let inUserNs: boolean | undefined;

/** One line of /proc/PID/uid_map or gid_map: ids inside from `inside`, `count` of them, are `outside`… outside. */
export interface IdMapRange {
  inside: number;
  outside: number;
  count: number;
}

/** A process's uid or gid map (user_namespaces(7)), one range a line. */
export function readIdMap(file = '/proc/self/uid_map'): IdMapRange[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .map(([inside = 0, outside = 0, count = 0]) => ({ inside, outside, count }));
}

/**
 * Whether this process runs in a user namespace other than the initial one. The initial
 * namespace's uid_map is the identity over every id, `0 0 4294967295` (user_namespaces(7)); any
 * other map means a namespace made by someone: tsbuild's own re-exec (rootless), `tsbuild
 * unshare`, or a container tsbuild runs in. There the kernel's rules differ: overlayfs keeps its
 * state in user.overlay.* xattrs (`userxattr`), trusted.* xattrs and device nodes are refused,
 * sysfs needs a network namespace of our own, and the host's cgroups are not ours to write.
 */
export function inUserNamespace(): boolean {
  if (inUserNs === undefined) {
    let map: IdMapRange[] = [];
    try {
      map = readIdMap();
    } catch {
      // No /proc: nothing to tell, assume the initial namespace as every tool does.
    }
    inUserNs = map.length > 0 && !(map.length === 1 && map[0]!.inside === 0 && map[0]!.outside === 0 && map[0]!.count === 4294967295);
  }
  return inUserNs;
}

/** Whether `cap` is in this process's effective set (CapEff of /proc/self/status, proc(5)). */
export function hasEffectiveCapability(cap: number): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> BigInt(cap)) & 1n) === 1n;
}
