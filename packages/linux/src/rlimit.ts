import { lazy } from '@tsbuild/oci';
import { libc } from './ffi.js';
import { check } from './libc.js';

const fn = lazy(() => ({
  prlimit: libc().func('int prlimit(int pid, int resource, const uint64_t *newLimit, _Out_ uint64_t *oldLimit)'),
}));

/** RLIM_INFINITY of the 64-bit interface (prlimit(2)): "unlimited". */
export const RLIM_INFINITY = 0xffffffffffffffffn;

/**
 * prlimit(2) on the calling process: sets soft and hard limit of `resource` (an RLIMIT_* number)
 * and returns the previous pair. -1 (or RLIM_INFINITY) is unlimited. Raising a hard limit needs
 * CAP_SYS_RESOURCE; the limits survive execve (getrlimit(2)).
 */
export function setResourceLimit(resource: number, soft: number | bigint, hard: number | bigint): { soft: bigint; hard: bigint } {
  const value = (v: number | bigint): bigint => (v === -1 || v === -1n ? RLIM_INFINITY : BigInt(v));
  const next = new BigUint64Array([value(soft), value(hard)]);
  const old = new BigUint64Array(2);
  check(fn().prlimit(0, resource, next, old), 'prlimit');
  return { soft: old[0]!, hard: old[1]! };
}

/** The soft and hard limit of `resource` for the calling process (RLIM_INFINITY: unlimited). */
export function getResourceLimit(resource: number): { soft: bigint; hard: bigint } {
  const old = new BigUint64Array(2);
  check(fn().prlimit(0, resource, null, old), 'prlimit');
  return { soft: old[0]!, hard: old[1]! };
}
