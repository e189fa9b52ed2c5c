import { readFileSync } from 'node:fs';
import { check, sys } from './libc.js';

// Capabilities of the calling thread (capabilities(7)): capget(2) with the version-3 header and
// its two 32-bit data words. What a container keeps is set by the run helper (run-helper.c).

/** Capability numbers (linux/capability.h), by name without the CAP_ prefix. */
export const CAPABILITIES: Readonly<Record<string, number>> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

/** The highest capability the running kernel knows (/proc/sys/kernel/cap_last_cap, Linux 3.2). */
export function lastCapability(): number {
  try {
    return Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  } catch {
    return Math.max(...Object.values(CAPABILITIES));
  }
}

/** One capability set as a 64-bit mask (bit n = capability n). */
export type CapabilityMask = bigint;

export interface CapabilitySets {
  effective: CapabilityMask;
  permitted: CapabilityMask;
  inheritable: CapabilityMask;
}

// _LINUX_CAPABILITY_VERSION_3: two __user_cap_data_struct entries (u32 effective, permitted,
// inheritable each), the low 32 capabilities in the first.
const CAP_VERSION_3 = 0x20080522;

function header(): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(CAP_VERSION_3, 0); // the kernel reads it as a native u32; every Linux ABI node runs on here is little-endian
  h.writeInt32LE(0, 4); // pid 0: the calling thread
  return h;
}

export function capGet(): CapabilitySets {
  const data = Buffer.alloc(24);
  check(sys().capget(header(), data), 'capget');
  const word = (i: number, field: number): bigint => BigInt(data.readUInt32LE(i * 12 + field * 4));
  const mask = (field: number): bigint => word(0, field) | (word(1, field) << 32n);
  return { effective: mask(0), permitted: mask(1), inheritable: mask(2) };
}
