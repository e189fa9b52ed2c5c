import { CAPABILITIES } from '@tsbuild/linux';
import { FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';

/**
 * Docker's default capability set (moby oci/caps/defaults.go); with bounding = permitted =
 * effective = these, /proc/self/status shows CapEff 00000000a80425fb for root.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_RAW',
  'CAP_SYS_CHROOT',
  'CAP_MKNOD',
  'CAP_AUDIT_WRITE',
  'CAP_SETFCAP',
];

/** `--cap-add` / `--cap-drop`: names with or without CAP_, any case, or ALL. */
export interface CapabilityChanges {
  add?: string[];
  drop?: string[];
}

/**
 * The container's capability set after docker's rules (moby oci/caps TweakCapabilities): start
 * from the default set (or from nothing when ALL is dropped), add the added ones (ALL = every
 * capability the kernel knows), then remove the dropped ones; a capability both added and
 * dropped is added. Returns CAP_… names in capability-number order.
 *
 * `held` is the permitted set of tsbuild itself (capget(2)): a process can give its child no
 * capability it lacks (capset(2) answers EPERM). ALL therefore means every capability tsbuild
 * holds, as podman reads it (its bounding set); where tsbuild runs with fewer (inside another
 * container, under a systemd CapabilityBoundingSet), a capability named on its own, or one of the
 * default set, that it lacks is an error naming it, before anything starts.
 */
export function resolveCapabilities(changes: CapabilityChanges | undefined, lastCap: number, held: bigint = (1n << BigInt(lastCap + 1)) - 1n): string[] {
  const isHeld = (name: string): boolean => ((held >> BigInt(CAPABILITIES[name.slice(4)] ?? 63)) & 1n) === 1n;
  const known = Object.entries(CAPABILITIES)
    .filter(([, n]) => n <= lastCap)
    .map(([name]) => `CAP_${name}`);
  const norm = (list: string[] | undefined, what: string): string[] =>
    (list ?? []).map((c) => {
      const up = c.trim().toUpperCase();
      if (up === 'ALL') return 'ALL';
      const name = up.startsWith('CAP_') ? up : `CAP_${up}`;
      if (!known.includes(name)) throw new InvalidArgumentError(`${what}: unknown capability ${c} (this kernel knows ${known.length}: CAP_CHOWN … CAP_${Object.keys(CAPABILITIES)[lastCap] ?? lastCap})`);
      return name;
    });
  const add = norm(changes?.add, '--cap-add');
  const drop = norm(changes?.drop, '--cap-drop');
  let set = new Set<string>(drop.includes('ALL') ? [] : DEFAULT_CAPABILITIES);
  if (add.includes('ALL')) set = new Set(known.filter(isHeld));
  for (const c of add) if (c !== 'ALL') set.add(c);
  for (const c of drop) if (c !== 'ALL' && !add.includes(c)) set.delete(c);
  const result = known.filter((c) => set.has(c));
  const lacking = result.filter((c) => !isHeld(c));
  if (lacking.length > 0) {
    throw new FailedPreconditionError(`cannot give the container ${lacking.join(', ')}: tsbuild itself does not hold ${lacking.length === 1 ? 'it' : 'them'}`);
  }
  return result;
}

/** The names as a mask, bit n for capability n. */
export function capabilityMask(names: readonly string[]): bigint {
  let m = 0n;
  for (const n of names) {
    const bit = CAPABILITIES[n.replace(/^CAP_/, '')];
    if (bit === undefined) throw new InvalidArgumentError(`unknown capability ${n}`);
    m |= 1n << BigInt(bit);
  }
  return m;
}
