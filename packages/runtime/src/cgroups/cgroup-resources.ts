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
}

/** One cgroup file and the value written to it. */
export type CgroupWrite = [file: string, value: string];

/** The v1 controller hierarchies a run needs, each with its writes in order. */
export type V1Controller = 'memory' | 'cpu' | 'cpuset' | 'pids';

/** CFS period for --cpus, docker's and runc's 100 ms. */
export const CFS_PERIOD_US = 100_000;

export function validateResources(r: Resources): void {
  const where = 'run: resources';
  const bytes = (name: string, v: number | undefined): void => {
    if (v !== undefined && (!Number.isSafeInteger(v) || (v <= 0 && v !== -1))) throw new InvalidArgumentError(`${where}.${name} must be a positive byte count or -1: ${v}`);
  };
  bytes('memory', r.memory);
  bytes('memorySwap', r.memorySwap);
  if (r.memory === -1) throw new InvalidArgumentError(`${where}.memory must be a positive byte count: -1`);
  if (r.memorySwap !== undefined && r.memory === undefined) {
    throw new InvalidArgumentError(`${where}.memorySwap needs memory too (docker: "set the memory limit when using memory-swap")`);
  }
  if (r.memorySwap !== undefined && r.memorySwap !== -1 && r.memory !== undefined && r.memorySwap < r.memory) {
    throw new InvalidArgumentError(`${where}.memorySwap (${r.memorySwap}) is memory plus swap and must be at least memory (${r.memory})`);
  }
  // The kernel refuses a memory limit below a few pages; docker's floor is 6 MiB.
  if (r.memory !== undefined && r.memory < 6 * 1024 * 1024) throw new InvalidArgumentError(`${where}.memory must be at least 6 MiB: ${r.memory}`);
  if (r.cpus !== undefined && !(Number.isFinite(r.cpus) && r.cpus > 0 && Math.round(r.cpus * CFS_PERIOD_US) >= 1000)) {
    throw new InvalidArgumentError(`${where}.cpus must be at least 0.01: ${r.cpus}`);
  }
  // cpu.shares' range in the kernel (MIN_SHARES .. MAX_SHARES).
  if (r.cpuShares !== undefined && !(Number.isSafeInteger(r.cpuShares) && r.cpuShares >= 2 && r.cpuShares <= 262144)) {
    throw new InvalidArgumentError(`${where}.cpuShares must be an integer from 2 to 262144: ${r.cpuShares}`);
  }
  if (r.cpusetCpus !== undefined && !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(r.cpusetCpus)) {
    throw new InvalidArgumentError(`${where}.cpusetCpus is not a CPU list like 0-2,4: ${r.cpusetCpus}`);
  }
  if (r.pidsLimit !== undefined && !(Number.isSafeInteger(r.pidsLimit) && r.pidsLimit >= -1)) {
    throw new InvalidArgumentError(`${where}.pidsLimit must be a positive integer, or 0 / -1 for unlimited: ${r.pidsLimit}`);
  }
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
export function v1Writes(r: Resources, hasMemsw: boolean): Map<V1Controller, CgroupWrite[]> {
  const out = new Map<V1Controller, CgroupWrite[]>();
  if (r.memory !== undefined) {
    // memsw must stay >= limit_in_bytes at every moment: from a fresh (unlimited) cgroup set the
    // memory limit first, then memsw.
    const w: CgroupWrite[] = [['memory.limit_in_bytes', String(r.memory)]];
    const total = memorySwapTotal(r);
    if (hasMemsw && total !== undefined) w.push(['memory.memsw.limit_in_bytes', String(total)]);
    out.set('memory', w);
  }
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
  return out;
}

/** The v2 controllers (cgroup.subtree_control names) the writes of `v2Writes` need. */
export function v2Controllers(r: Resources): string[] {
  const c: string[] = [];
  if (r.cpus !== undefined || r.cpuShares !== undefined) c.push('cpu');
  if (r.cpusetCpus !== undefined) c.push('cpuset');
  if (r.memory !== undefined) c.push('memory');
  if (r.pidsLimit !== undefined) c.push('pids');
  return c;
}

/** The files to write in the run's v2 cgroup (Documentation/admin-guide/cgroup-v2.rst). */
export function v2Writes(r: Resources, hasSwap = true): CgroupWrite[] {
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
  return w;
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
