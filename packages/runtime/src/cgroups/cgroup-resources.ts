import { InvalidArgumentError } from '@tsbuild/oci';

/**
 * Resource limits of one run, with docker's meaning (docker run --memory, --memory-swap, --cpus,
 * --cpu-shares, --cpuset-cpus, --pids-limit).
 */
export interface Resources {
  /** Bytes of memory (RAM). */
  memory?: number;
  /**
   * Bytes of memory plus swap, as docker counts it: -1 is unlimited swap; unset with `memory` set
   * means twice `memory` (docker's default); must be at least `memory`.
   */
  memorySwap?: number;
  /** CPUs worth of time (0.25 = a quarter of one CPU), a CFS quota over a 100 ms period. */
  cpus?: number;
  /** Relative weight (cgroup v1 cpu.shares, default 1024), converted to cpu.weight on v2. */
  cpuShares?: number;
  /** CPUs to run on, in the kernel's list format ("0", "0-2", "0,3"). */
  cpusetCpus?: string;
  /** Maximum number of processes (tasks); 0 or -1 is unlimited. */
  pidsLimit?: number;
  /** Block I/O weight, 10 to 1000 (docker --blkio-weight). */
  blkioWeight?: number;
  /** Block I/O weight of one device (docker --blkio-weight-device), 10 to 1000. */
  blkioWeightDevice?: DeviceRate[];
  /** Bytes per second read from / written to one block device (--device-read-bps, --device-write-bps). */
  deviceReadBps?: DeviceRate[];
  deviceWriteBps?: DeviceRate[];
  /** I/O operations per second on one block device (--device-read-iops, --device-write-iops). */
  deviceReadIops?: DeviceRate[];
  deviceWriteIops?: DeviceRate[];
  /** Bytes of memory the kernel tries to leave the run under pressure (v1 soft limit, v2 memory.low). */
  memoryReservation?: number;
  /** 0 to 100 (v1 memory.swappiness); cgroup v2 has no such knob. */
  memorySwappiness?: number;
  /**
   * Devices the run may use beyond the default set (DEFAULT_DEVICE_RULES: null, zero, full,
   * random, urandom, tty, console, ptmx, pts/*, tun, and mknod of any node). Filled from --device.
   * Enforced only by the built-in runtime (createRunCgroup's `confineDevices`); an OCI runtime
   * applies the bundle's own rules.
   */
  devices?: DeviceRule[];
  /**
   * The cgroup the run's cgroups go under (docker --cgroup-parent), absolute inside each
   * hierarchy; `/tsbuild` when unset.
   */
  cgroupParent?: string;
}

/** A block device by its numbers, and a weight or a rate for it. */
export interface DeviceRate {
  major: number;
  minor: number;
  /** The weight (10–1000) or the rate (bytes or operations per second, > 0). */
  rate: number;
}

/**
 * One allow rule of the devices cgroup: a character or block device (major/minor -1 for any),
 * and what may be done with it (r read, w write, m mknod).
 */
export interface DeviceRule {
  type: 'c' | 'b';
  major: number;
  minor: number;
  access: string;
}

/**
 * runc's default allow list (libcontainer/specconv AllowedDevices), which docker and podman
 * apply too: mknod of anything (the node is harmless until opened), the pseudo devices, the
 * controlling tty and console, the pty master and slaves of the container's devpts, and tun.
 */
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = [
  { type: 'c', major: -1, minor: -1, access: 'm' },
  { type: 'b', major: -1, minor: -1, access: 'm' },
  { type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { type: 'c', major: 5, minor: 1, access: 'rwm' }, // console
  { type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { type: 'c', major: 136, minor: -1, access: 'rwm' }, // pts/*
  { type: 'c', major: 10, minor: 200, access: 'rwm' }, // net/tun
];

/** The rules a confined run gets: the defaults, then the devices it was given. */
export function deviceRules(r: Resources): DeviceRule[] {
  return [...DEFAULT_DEVICE_RULES, ...(r.devices ?? [])];
}

/** One cgroup file and the value written to it. */
export type CgroupWrite = [file: string, value: string];

/** The v1 controller hierarchies a run needs, each with its writes in order. */
export type V1Controller = 'memory' | 'cpu' | 'cpuset' | 'pids' | 'blkio' | 'devices';

/** CFS period for --cpus, docker's and runc's 100 ms. */
export const CFS_PERIOD_US = 100_000;

/**
 * Throws an InvalidArgumentError, one line, for the first value the kernel or docker would refuse.
 * `label` names a field in the message: `run: resources.memory` by default, the flag (`--memory`)
 * for the CLI, which checks its flags before anything starts.
 */
export function validateResources(r: Resources, label: (field: keyof Resources) => string = (f) => `run: resources.${f}`): void {
  const bytes = (name: 'memory' | 'memorySwap', v: number | undefined): void => {
    if (v !== undefined && (!Number.isSafeInteger(v) || (v <= 0 && v !== -1))) throw new InvalidArgumentError(`${label(name)} must be a positive byte count or -1: ${v}`);
  };
  bytes('memory', r.memory);
  bytes('memorySwap', r.memorySwap);
  if (r.memory === -1) throw new InvalidArgumentError(`${label('memory')} must be a positive byte count: -1`);
  if (r.memorySwap !== undefined && r.memory === undefined) {
    throw new InvalidArgumentError(`${label('memorySwap')} needs memory too (docker: "set the memory limit when using memory-swap")`);
  }
  if (r.memorySwap !== undefined && r.memorySwap !== -1 && r.memory !== undefined && r.memorySwap < r.memory) {
    throw new InvalidArgumentError(`${label('memorySwap')} (${r.memorySwap}) is memory plus swap and must be at least memory (${r.memory})`);
  }
  // The kernel refuses a memory limit below a few pages; docker's floor is 6 MiB.
  if (r.memory !== undefined && r.memory < 6 * 1024 * 1024) throw new InvalidArgumentError(`${label('memory')} must be at least 6 MiB: ${r.memory}`);
  if (r.cpus !== undefined && !(Number.isFinite(r.cpus) && r.cpus > 0 && Math.round(r.cpus * CFS_PERIOD_US) >= 1000)) {
    throw new InvalidArgumentError(`${label('cpus')} must be at least 0.01: ${r.cpus}`);
  }
  // cpu.shares' range in the kernel (MIN_SHARES .. MAX_SHARES).
  if (r.cpuShares !== undefined && !(Number.isSafeInteger(r.cpuShares) && r.cpuShares >= 2 && r.cpuShares <= 262144)) {
    throw new InvalidArgumentError(`${label('cpuShares')} must be an integer from 2 to 262144: ${r.cpuShares}`);
  }
  if (r.cpusetCpus !== undefined && !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(r.cpusetCpus)) {
    throw new InvalidArgumentError(`${label('cpusetCpus')} is not a CPU list like 0-2,4: ${r.cpusetCpus}`);
  }
  if (r.pidsLimit !== undefined && !(Number.isSafeInteger(r.pidsLimit) && r.pidsLimit >= -1)) {
    throw new InvalidArgumentError(`${label('pidsLimit')} must be a positive integer, or 0 / -1 for unlimited: ${r.pidsLimit}`);
  }
  // CFQ's and BFQ's weight range (block/bfq-iosched.h BFQ_MIN_WEIGHT .. BFQ_MAX_WEIGHT), docker's too.
  const weight = (name: 'blkioWeight' | 'blkioWeightDevice', v: number): void => {
    if (!(Number.isSafeInteger(v) && v >= 10 && v <= 1000)) throw new InvalidArgumentError(`${label(name)} must be an integer from 10 to 1000: ${v}`);
  };
  if (r.blkioWeight !== undefined) weight('blkioWeight', r.blkioWeight);
  const number = (name: keyof Resources, what: string, v: number): void => {
    if (!(Number.isSafeInteger(v) && v >= 0 && v <= 0xffffffff)) throw new InvalidArgumentError(`${label(name)} ${what} must be a device number: ${v}`);
  };
  for (const name of ['blkioWeightDevice', 'deviceReadBps', 'deviceWriteBps', 'deviceReadIops', 'deviceWriteIops'] as const) {
    for (const d of r[name] ?? []) {
      number(name, 'major', d.major);
      number(name, 'minor', d.minor);
      if (name === 'blkioWeightDevice') weight(name, d.rate);
      else if (!(Number.isSafeInteger(d.rate) && d.rate > 0)) throw new InvalidArgumentError(`${label(name)} for ${d.major}:${d.minor} must be a positive integer: ${d.rate}`);
    }
  }
  if (r.memoryReservation !== undefined) {
    if (!(Number.isSafeInteger(r.memoryReservation) && r.memoryReservation > 0)) throw new InvalidArgumentError(`${label('memoryReservation')} must be a positive byte count: ${r.memoryReservation}`);
    if (r.memory !== undefined && r.memoryReservation > r.memory) {
      throw new InvalidArgumentError(`${label('memoryReservation')} (${r.memoryReservation}) must not exceed memory (${r.memory})`);
    }
  }
  if (r.memorySwappiness !== undefined && !(Number.isSafeInteger(r.memorySwappiness) && r.memorySwappiness >= 0 && r.memorySwappiness <= 100)) {
    throw new InvalidArgumentError(`${label('memorySwappiness')} must be an integer from 0 to 100: ${r.memorySwappiness}`);
  }
  for (const d of r.devices ?? []) {
    const what = `${label('devices')} ${d.type} ${d.major}:${d.minor} ${d.access}`;
    if (d.type !== 'c' && d.type !== 'b') throw new InvalidArgumentError(`${what}: type must be c or b`);
    for (const n of [d.major, d.minor]) if (!(Number.isSafeInteger(n) && n >= -1 && n <= 0xffffffff)) throw new InvalidArgumentError(`${what}: major and minor must be numbers (-1 for any)`);
    if (!/^(?!.*(.).*\1)[rwm]{1,3}$/.test(d.access)) throw new InvalidArgumentError(`${what}: access must be some of r, w, m`);
  }
  if (r.cgroupParent !== undefined && !validCgroupParent(r.cgroupParent)) {
    throw new InvalidArgumentError(`${label('cgroupParent')} must be an absolute path inside the cgroup hierarchy, without . or .. (e.g. /builds): ${r.cgroupParent}`);
  }
}

function validCgroupParent(p: string): boolean {
  const parts = p.split('/').filter((c) => c !== '');
  return p.startsWith('/') && parts.length > 0 && !parts.some((c) => c === '.' || c === '..');
}

/**
 * --cgroup-parent as a path inside a hierarchy: absolute, each component a plain name. A `..`
 * would leave the hierarchy's subtree tsbuild is meant to use (or the cgroupfs altogether).
 */
export function cgroupParentPath(p: string): string[] {
  if (!validCgroupParent(p)) throw new InvalidArgumentError(`cgroup parent must be an absolute path inside the cgroup hierarchy, without . or .. (e.g. /builds): ${p}`);
  return p.split('/').filter((c) => c !== '');
}

/** docker's memory+swap total: unset means twice the memory, -1 unlimited. */
function memorySwapTotal(r: Resources): number | undefined {
  if (r.memory === undefined) return undefined;
  return r.memorySwap ?? r.memory * 2;
}

/**
 * The files to write in each v1 hierarchy. `hasMemsw` says whether memory.memsw.* exists (swap
 * accounting is on); without it a swap limit cannot be set and, as docker does, is left out.
 */
export function v1Writes(r: Resources, hasMemsw: boolean, o: V1Options = {}): Map<V1Controller, CgroupWrite[]> {
  const out = new Map<V1Controller, CgroupWrite[]>();
  const memory: CgroupWrite[] = [];
  if (r.memory !== undefined) {
    // memsw must stay >= limit_in_bytes at every moment: from a fresh (unlimited) cgroup set the
    // memory limit first, then memsw.
    memory.push(['memory.limit_in_bytes', String(r.memory)]);
    const total = memorySwapTotal(r);
    if (hasMemsw && total !== undefined) memory.push(['memory.memsw.limit_in_bytes', String(total)]);
  }
  if (r.memoryReservation !== undefined) memory.push(['memory.soft_limit_in_bytes', String(r.memoryReservation)]);
  if (r.memorySwappiness !== undefined) memory.push(['memory.swappiness', String(r.memorySwappiness)]);
  if (memory.length > 0) out.set('memory', memory);
  const cpu: CgroupWrite[] = [];
  if (r.cpuShares !== undefined) cpu.push(['cpu.shares', String(r.cpuShares)]);
  if (r.cpus !== undefined) {
    cpu.push(['cpu.cfs_period_us', String(CFS_PERIOD_US)]);
    cpu.push(['cpu.cfs_quota_us', String(Math.round(r.cpus * CFS_PERIOD_US))]);
  }
  if (cpu.length > 0) out.set('cpu', cpu);
  // cpuset.mems is filled from the parent by the caller: a v1 cpuset with empty mems takes no task.
  if (r.cpusetCpus !== undefined) out.set('cpuset', [['cpuset.cpus', r.cpusetCpus]]);
  if (r.pidsLimit !== undefined) out.set('pids', [['pids.max', r.pidsLimit <= 0 ? 'max' : String(r.pidsLimit)]]);
  const blkio: CgroupWrite[] = [];
  // CFQ's blkio.weight went with CFQ (Linux 5.0); BFQ's files are blkio.bfq.*. Which exist is
  // the caller's to probe (`bfq`), as runc does, BFQ first.
  const weight = o.bfq === true ? 'blkio.bfq.weight' : 'blkio.weight';
  if (r.blkioWeight !== undefined) blkio.push([weight, String(r.blkioWeight)]);
  // The kernel takes one device per write to these files.
  for (const d of r.blkioWeightDevice ?? []) blkio.push([`${weight}_device`, `${d.major}:${d.minor} ${d.rate}`]);
  for (const [key, file] of THROTTLE) for (const d of r[key] ?? []) blkio.push([`blkio.throttle.${file}_device`, `${d.major}:${d.minor} ${d.rate}`]);
  if (blkio.length > 0) out.set('blkio', blkio);
  if (o.devices !== undefined) {
    // A new devices cgroup copies its parent's list: deny everything first, then allow the rules.
    out.set('devices', [['devices.deny', 'a'], ...o.devices.map((d): CgroupWrite => ['devices.allow', deviceRuleText(d)])]);
  }
  return out;
}

export interface V1Options {
  /** The blkio hierarchy has BFQ's blkio.bfq.weight rather than CFQ's blkio.weight. */
  bfq?: boolean;
  /** Confine the run to these devices (devices.deny a, then devices.allow each). */
  devices?: DeviceRule[];
}

const THROTTLE = [
  ['deviceReadBps', 'read_bps'],
  ['deviceWriteBps', 'write_bps'],
  ['deviceReadIops', 'read_iops'],
  ['deviceWriteIops', 'write_iops'],
] as const;

/** Does the run need block I/O control at all. */
export function wantsBlkio(r: Resources): boolean {
  return r.blkioWeight !== undefined || [r.blkioWeightDevice, r.deviceReadBps, r.deviceWriteBps, r.deviceReadIops, r.deviceWriteIops].some((l) => l !== undefined && l.length > 0);
}

/** A rule as devices.allow reads it: `c 1:3 rwm`, `*` for -1. */
export function deviceRuleText(d: DeviceRule): string {
  const n = (v: number): string => (v === -1 ? '*' : String(v));
  return `${d.type} ${n(d.major)}:${n(d.minor)} ${d.access}`;
}

/** The v2 controllers (cgroup.subtree_control names) the writes of `v2Writes` need. */
export function v2Controllers(r: Resources): string[] {
  const c: string[] = [];
  if (r.cpus !== undefined || r.cpuShares !== undefined) c.push('cpu');
  if (r.cpusetCpus !== undefined) c.push('cpuset');
  if (wantsBlkio(r)) c.push('io');
  if (r.memory !== undefined || r.memoryReservation !== undefined) c.push('memory');
  if (r.pidsLimit !== undefined) c.push('pids');
  return c;
}

/**
 * The files to write in the run's v2 cgroup (Documentation/admin-guide/cgroup-v2.rst). `bfq`: the
 * cgroup has io.bfq.weight (BFQ schedules some disk), which takes blkio's 10–1000 as it is;
 * io.weight (the io.cost controller) is 1–10000 and gets runc's linear conversion.
 */
export function v2Writes(r: Resources, hasSwap = true, bfq = false): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  if (r.memory !== undefined) {
    w.push(['memory.max', String(r.memory)]);
    // v2 limits swap alone: docker's memory+swap total minus the memory.
    const total = memorySwapTotal(r) as number;
    if (hasSwap) w.push(['memory.swap.max', total === -1 ? 'max' : String(total - r.memory)]);
  }
  if (r.cpuShares !== undefined) w.push(['cpu.weight', String(cpuSharesToWeight(r.cpuShares))]);
  if (r.cpus !== undefined) w.push(['cpu.max', `${Math.round(r.cpus * CFS_PERIOD_US)} ${CFS_PERIOD_US}`]);
  if (r.cpusetCpus !== undefined) w.push(['cpuset.cpus', r.cpusetCpus]);
  if (r.pidsLimit !== undefined) w.push(['pids.max', r.pidsLimit <= 0 ? 'max' : String(r.pidsLimit)]);
  if (r.memoryReservation !== undefined) w.push(['memory.low', String(r.memoryReservation)]);
  const weightFile = bfq ? 'io.bfq.weight' : 'io.weight';
  const weight = (v: number): number => (bfq ? v : blkioToIoWeight(v));
  if (r.blkioWeight !== undefined) w.push([weightFile, String(weight(r.blkioWeight))]);
  for (const d of r.blkioWeightDevice ?? []) w.push([weightFile, `${d.major}:${d.minor} ${weight(d.rate)}`]);
  // io.max: one line per device with every limit of that device (keys it omits are left as they are).
  const max = new Map<string, string[]>();
  for (const [key, name] of [['deviceReadBps', 'rbps'], ['deviceWriteBps', 'wbps'], ['deviceReadIops', 'riops'], ['deviceWriteIops', 'wiops']] as const) {
    for (const d of r[key] ?? []) {
      const dev = `${d.major}:${d.minor}`;
      max.set(dev, [...(max.get(dev) ?? []), `${name}=${d.rate}`]);
    }
  }
  for (const [dev, limits] of max) w.push(['io.max', `${dev} ${limits.join(' ')}`]);
  return w;
}

/** blkio.weight [10, 1000] to io.weight [1, 10000] (runc's ConvertBlkIOToIOWeightValue). */
export function blkioToIoWeight(v: number): number {
  return 1 + Math.floor(((v - 10) * 9999) / 990);
}

/**
 * cpu.shares [2, 262144] (default 1024) to cpu.weight [1, 10000] (default 100), the way current
 * runc converts it (opencontainers/cgroups ConvertCPUSharesToCgroupV2Value since 2025): a
 * quadratic in log2(shares) through (2, 1), (1024, 100) and (262144, 10000), so that the defaults
 * map onto each other. The older linear formula, 1 + (shares - 2) * 9999 / 262142, turned the
 * default 1024 into 39.
 */
export function cpuSharesToWeight(shares: number): number {
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  const l = Math.log2(shares);
  const exponent = (l * l + 125 * l) / 612 - 7 / 34;
  return Math.min(10000, Math.ceil(10 ** exponent - 1e-9));
}
