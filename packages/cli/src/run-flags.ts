import { statSync } from 'node:fs';
import type { DeviceRate, Resources } from '@tsbuild/runtime';
import { posix } from 'node:path';
import { Flags } from './cli-kit.js';
import { InvalidArgumentError, parseByteSize } from '@tsbuild/oci';
import { inUserNamespace, major, minor, readIdMap } from '@tsbuild/linux';
import type { RunDefaults } from '@tsbuild/builder';

type ExtraMount = NonNullable<RunDefaults['mounts']>[number];

/**
 * The container flags `build` and `run` share, spelled as docker and buildah spell them.
 */
export const runtimeFlags = {
  memory: Flags.string({ char: 'm', description: 'memory limit (e.g. 64m, 1g)', helpGroup: 'CONTAINER' }),
  'memory-swap': Flags.string({ description: 'memory plus swap limit (-1 for unlimited swap)', helpGroup: 'CONTAINER' }),
  cpus: Flags.string({ description: 'number of CPUs (e.g. 0.5)', helpGroup: 'CONTAINER' }),
  'cpu-shares': Flags.integer({ description: 'relative CPU weight (default 1024)', helpGroup: 'CONTAINER' }),
  'cpuset-cpus': Flags.string({ description: 'CPUs to run on (e.g. 0-1, 0,2)', helpGroup: 'CONTAINER' }),
  'pids-limit': Flags.integer({ description: 'maximum number of processes (-1 unlimited)', helpGroup: 'CONTAINER' }),
  network: Flags.string({ description: 'network mode', options: ['host', 'none', 'private'], helpGroup: 'CONTAINER' }),
  'cap-add': Flags.string({ description: 'add a capability (repeatable; ALL)', multiple: true, helpGroup: 'CONTAINER' }),
  'cap-drop': Flags.string({ description: 'drop a capability (repeatable; ALL)', multiple: true, helpGroup: 'CONTAINER' }),
  'security-opt': Flags.string({
    description: 'seccomp=unconfined|PROFILE.json, systempaths=unconfined, no-new-privileges, label=user:U|role:R|type:T|level:L|filetype:T|disable (SELinux), apparmor=PROFILE|unconfined (repeatable)',
    multiple: true,
    helpGroup: 'CONTAINER',
  }),
  runtime: Flags.string({ description: 'OCI runtime to use instead of the built-in one: runc, crun or a path', helpGroup: 'CONTAINER' }),
  ...cgroupFlags(),
  // The process and /dev of the container (issue 20, process side).
  ulimit: Flags.string({ description: 'resource limit NAME=SOFT[:HARD], -1 unlimited, e.g. nofile=1024:2048 (repeatable; default nofile=1024:1024, nproc=32768:32768)', multiple: true, helpGroup: 'CONTAINER' }),
  'oom-score-adj': Flags.string({ description: 'the command\'s OOM score adjustment, -1000 to 1000', helpGroup: 'CONTAINER' }),
  device: Flags.string({ description: 'add a host device: HOST[:CONTAINER][:ACCESS], ACCESS some of rwm (repeatable)', multiple: true, helpGroup: 'CONTAINER' }),
  'shm-size': Flags.string({ description: 'size of /dev/shm (default 64m)', helpGroup: 'CONTAINER' }),
  tmpfs: Flags.string({ description: 'mount a tmpfs: PATH[:OPTIONS], e.g. /run:rw,size=10m,mode=1777 (repeatable; default rw,noexec,nosuid,nodev)', multiple: true, helpGroup: 'CONTAINER' }),
};

/** Block I/O, memory reservation and swappiness, cgroup parent: the cgroup side of issue 20. */
function cgroupFlags() {
  const perDevice = (what: string) => Flags.string({ description: `${what} (repeatable)`, multiple: true, helpGroup: 'CONTAINER' });
  return {
    'blkio-weight': Flags.integer({ description: 'block I/O weight, 10 to 1000', helpGroup: 'CONTAINER' }),
    'blkio-weight-device': perDevice('block I/O weight of a device, DEVICE:WEIGHT'),
    'device-read-bps': perDevice('read rate limit of a block device, DEVICE:RATE (e.g. /dev/sda:1mb)'),
    'device-write-bps': perDevice('write rate limit of a block device, DEVICE:RATE (e.g. /dev/sda:1mb)'),
    'device-read-iops': perDevice('read operations per second of a block device, DEVICE:N'),
    'device-write-iops': perDevice('write operations per second of a block device, DEVICE:N'),
    'memory-reservation': Flags.string({ description: 'memory soft limit (e.g. 32m)', helpGroup: 'CONTAINER' }),
    'memory-swappiness': Flags.integer({ description: 'swappiness of the container, 0 to 100 (cgroup v1 only)', helpGroup: 'CONTAINER' }),
    'cgroup-parent': Flags.string({ description: 'cgroup to create the container cgroups under, absolute (default /tsbuild)', helpGroup: 'CONTAINER' }),
  };
}

/** The Resources flag each field comes from, to name it in an error. */
const RESOURCE_FLAGS: Record<keyof Resources, string> = {
  memory: '--memory',
  memorySwap: '--memory-swap',
  cpus: '--cpus',
  cpuShares: '--cpu-shares',
  cpusetCpus: '--cpuset-cpus',
  pidsLimit: '--pids-limit',
  blkioWeight: '--blkio-weight',
  blkioWeightDevice: '--blkio-weight-device',
  deviceReadBps: '--device-read-bps',
  deviceWriteBps: '--device-write-bps',
  deviceReadIops: '--device-read-iops',
  deviceWriteIops: '--device-write-iops',
  memoryReservation: '--memory-reservation',
  memorySwappiness: '--memory-swappiness',
  devices: '--device',
  cgroupParent: '--cgroup-parent',
};

/**
 * A block device path as the kernel numbers it. The cgroup files take MAJ:MIN of a whole disk
 * or partition, which is what docker resolves the path to (the node's st_rdev).
 */
export function blockDevice(flag: string, value: string, path: string): { major: number; minor: number } {
  let st;
  try {
    st = statSync(path, { bigint: true });
  } catch (e) {
    throw new InvalidArgumentError(`${flag} ${value}: ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (!st.isBlockDevice()) throw new InvalidArgumentError(`${flag} ${value}: ${path} is not a block device`);
  return { major: major(st.rdev), minor: minor(st.rdev) };
}

/** `DEVICE:VALUE` of the per-device flags; VALUE parsed by `parse` (null: refuse it). */
function perDevice(flag: string, values: readonly string[] | undefined, parse: (v: string) => number | null, want: string): DeviceRate[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  return values.map((v) => {
    const colon = v.lastIndexOf(':');
    if (colon <= 0) throw new InvalidArgumentError(`${flag} ${v}: want DEVICE:${want}`);
    const rate = parse(v.slice(colon + 1));
    if (rate === null) throw new InvalidArgumentError(`${flag} ${v}: ${v.slice(colon + 1)} is not ${want === 'RATE' ? 'a rate such as 1mb or 512k' : 'a positive integer'}`);
    return { ...blockDevice(flag, v, v.slice(0, colon)), rate };
  });
}

/** The cgroup side of issue 20's flags, into `resources`. */
function cgroupOptions(f: RuntimeFlagValues, resources: Resources): void {
  const integer = (s: string): number | null => (/^\d+$/.test(s) ? Number(s) : null);
  const rate = (s: string): number | null => {
    const n = parseByteSize(s);
    return n !== undefined && n > 0 ? n : null;
  };
  if (f['blkio-weight'] !== undefined) resources.blkioWeight = f['blkio-weight'];
  const lists = {
    blkioWeightDevice: perDevice('--blkio-weight-device', f['blkio-weight-device'], integer, 'WEIGHT'),
    deviceReadBps: perDevice('--device-read-bps', f['device-read-bps'], rate, 'RATE'),
    deviceWriteBps: perDevice('--device-write-bps', f['device-write-bps'], rate, 'RATE'),
    deviceReadIops: perDevice('--device-read-iops', f['device-read-iops'], integer, 'N'),
    deviceWriteIops: perDevice('--device-write-iops', f['device-write-iops'], integer, 'N'),
  };
  for (const [k, v] of Object.entries(lists)) if (v !== undefined) resources[k as keyof typeof lists] = v;
  if (f['memory-reservation'] !== undefined) resources.memoryReservation = parseBytes('memory-reservation', f['memory-reservation']);
  if (f['memory-swappiness'] !== undefined) resources.memorySwappiness = f['memory-swappiness'];
  if (f['cgroup-parent'] !== undefined) resources.cgroupParent = f['cgroup-parent'];
}

/**
 * User namespace flags: `run` only. A build would need the layer's ids mapped back from the host
 * range to the container's (root inside is 100000 outside), which the snapshotter does not do.
 */
export const usernsFlags = {
  userns: Flags.string({ description: 'user namespace: host (none, the default) or auto (root inside is uid 100000 outside, 65536 ids)', options: ['host', 'auto'], helpGroup: 'CONTAINER' }),
  uidmap: Flags.string({ description: 'user namespace uid mapping CONTAINER_ID:HOST_ID:SIZE (one range from 0)', helpGroup: 'CONTAINER' }),
  gidmap: Flags.string({ description: 'user namespace gid mapping CONTAINER_ID:HOST_ID:SIZE (default: as --uidmap)', helpGroup: 'CONTAINER' }),
};

/** Bind mounts: `run IMAGE` only (a working container would keep the mountpoints in its next layer). */
export const volumeFlags = {
  volume: Flags.string({ char: 'v', description: 'bind a host path: HOST:CONTAINER[:ro|rw|nosuid|nodev|noexec,…] (repeatable; HOST absolute and existing)', multiple: true, helpGroup: 'CONTAINER' }),
};

/** Options `-v` takes after the second colon: docker's and podman's that mean something here. */
const VOLUME_OPTIONS = new Set(['ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'bind', 'rbind']);

/**
 * `-v HOST:CONTAINER[:OPTIONS]` as docker and podman spell it, as the runtime's bind mounts (the
 * path RUN --mount=type=bind takes). Named volumes (a HOST without a slash) are podman's store of
 * volumes, which tsbuild has not; SELinux relabelling (z, Z) has no meaning without SELinux.
 */
export function parseVolumes(values: readonly string[]): ExtraMount[] {
  return values.map((v) => {
    const parts = v.split(':');
    const bad = (why: string): never => {
      throw new InvalidArgumentError(`--volume ${v}: ${why}`);
    };
    if (parts.length < 2 || parts.length > 3) bad('want HOST:CONTAINER[:OPTIONS] (anonymous volumes are not supported)');
    const [host, dest, opts] = parts as [string, string, string | undefined];
    if (!host.startsWith('/')) bad(host.startsWith('.') ? `host path ${host} must be absolute` : `named volumes are not supported: give an absolute host path instead of ${host}`);
    if (!posix.isAbsolute(dest)) bad(`container path ${dest} must be absolute`);
    try {
      statSync(host);
    } catch (e) {
      bad(`host path ${host}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    const options = ['rbind'];
    for (const o of opts === undefined ? [] : opts.split(',')) {
      if (o === 'z' || o === 'Z') bad(`${o}: SELinux relabelling is not supported`);
      if (!VOLUME_OPTIONS.has(o)) bad(`unknown option ${o} (want ro, rw, nosuid, nodev, noexec and their opposites)`);
      if (o !== 'bind' && o !== 'rbind') options.push(o);
    }
    return { destination: posix.normalize(dest), type: 'bind' as const, source: host, options };
  });
}

export interface RuntimeFlagValues {
  memory?: string;
  'memory-swap'?: string;
  cpus?: string;
  'cpu-shares'?: number;
  'cpuset-cpus'?: string;
  'pids-limit'?: number;
  network?: string;
  'cap-add'?: string[];
  'cap-drop'?: string[];
  'security-opt'?: string[];
  runtime?: string;
  'blkio-weight'?: number;
  'blkio-weight-device'?: string[];
  'device-read-bps'?: string[];
  'device-write-bps'?: string[];
  'device-read-iops'?: string[];
  'device-write-iops'?: string[];
  'memory-reservation'?: string;
  'memory-swappiness'?: number;
  'cgroup-parent'?: string;
  ulimit?: string[];
  'oom-score-adj'?: string;
  device?: string[];
  'shm-size'?: string;
  tmpfs?: string[];
  userns?: string;
  uidmap?: string;
  gidmap?: string;
}

/** Docker's byte sizes: a number with an optional b, k, m, g (binary units, case-insensitive). */
export function parseBytes(flag: string, v: string): number {
  if (v === '-1') return -1;
  const n = parseByteSize(v);
  if (n === undefined) throw new InvalidArgumentError(`--${flag}=${v}: want a size such as 64m or 1g`);
  return n;
}

/** Every flag runtimeOptions reads. */
const RUNTIME_FLAG_NAMES = [...Object.keys(runtimeFlags), 'userns', 'uidmap', 'gidmap'] as (keyof RuntimeFlagValues)[];

/**
 * The container flags as the runtime takes them, each value checked before anything starts (a
 * build's first RUN may come after a pull and many steps). The runtime package parses most of
 * them; where none is given (`from IMAGE`, most `run`s) it is not loaded for them.
 */
export async function runtimeOptions(f: RuntimeFlagValues): Promise<RunDefaults> {
  const given = (k: keyof RuntimeFlagValues): boolean => {
    const v = f[k];
    return v !== undefined && !(Array.isArray(v) && v.length === 0);
  };
  if (!RUNTIME_FLAG_NAMES.some(given)) return {};
  const rt = await import('@tsbuild/runtime');
  const resources: NonNullable<RunDefaults['resources']> = {};
  if (f.memory !== undefined) resources.memory = parseBytes('memory', f.memory);
  if (f['memory-swap'] !== undefined) resources.memorySwap = parseBytes('memory-swap', f['memory-swap']);
  if (f.cpus !== undefined) {
    const n = Number(f.cpus);
    if (!(n > 0)) throw new InvalidArgumentError(`--cpus=${f.cpus}: want a positive number`);
    resources.cpus = n;
  }
  if (f['cpu-shares'] !== undefined) resources.cpuShares = f['cpu-shares'];
  if (f['cpuset-cpus'] !== undefined) resources.cpusetCpus = f['cpuset-cpus'];
  if (f['pids-limit'] !== undefined) resources.pidsLimit = f['pids-limit'];
  cgroupOptions(f, resources);
  rt.validateResources(resources, (field) => RESOURCE_FLAGS[field]);
  const out: RunDefaults = {};
  if (Object.keys(resources).length > 0) out.resources = resources;
  if (f.network !== undefined) out.network = f.network as NonNullable<RunDefaults['network']>;
  if (f['cap-add'] || f['cap-drop']) out.capabilities = { add: f['cap-add'] ?? [], drop: f['cap-drop'] ?? [] };
  // The runtime's parser is the one owner of --security-opt's syntax.
  for (const [k, v] of Object.entries(rt.parseSecurityOpts(f['security-opt'] ?? []))) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  Object.assign(out, processOptions(f, rt));
  if (f.runtime !== undefined) out.runtime = f.runtime;
  const uid = f.uidmap !== undefined ? parseIdMap('uidmap', f.uidmap) : f.userns === 'auto' ? autoRange() : undefined;
  const gid = f.gidmap !== undefined ? parseIdMap('gidmap', f.gidmap) : uid;
  if (f.gidmap !== undefined && uid === undefined) throw new InvalidArgumentError('--gidmap needs --uidmap (or --userns=auto) too');
  if (uid && gid) out.userns = { uidMappings: [uid], gidMappings: [gid] };
  return out;
}

/** --ulimit, --oom-score-adj, --device, --shm-size, --tmpfs; each value checked before anything starts. */
function processOptions(f: RuntimeFlagValues, rt: typeof import('@tsbuild/runtime')): RunDefaults {
  const out: RunDefaults = {};
  if (f.ulimit !== undefined && f.ulimit.length > 0) out.ulimits = f.ulimit.map(rt.parseUlimit);
  const oom = f['oom-score-adj'];
  if (oom !== undefined) {
    out.oomScoreAdj = /^-?\d+$/.test(oom) ? Number(oom) : NaN;
    rt.validateOomScoreAdj(out.oomScoreAdj, `--oom-score-adj ${oom}`);
  }
  if (f.device !== undefined && f.device.length > 0) out.devices = f.device.map(rt.parseDevice);
  if (f['shm-size'] !== undefined) {
    out.shmSize = parseBytes('shm-size', f['shm-size']);
    rt.validateShmSize(out.shmSize, `--shm-size ${f['shm-size']}`);
  }
  if (f.tmpfs !== undefined && f.tmpfs.length > 0) out.tmpfs = f.tmpfs.map(rt.parseTmpfs);
  return out;
}

/**
 * `--userns=auto`: root inside is 100000 outside, 65536 ids. Rootless (already in a user
 * namespace, whose ids are the caller and its subordinate range), ids 100000… do not exist: the
 * container gets ids 1… of ours instead, as many as we have up to 65536.
 */
function autoRange(): { containerID: number; hostID: number; size: number } {
  if (!inUserNamespace()) return { containerID: 0, hostID: 100000, size: 65536 };
  const top = Math.max(...readIdMap().map((r) => r.inside + r.count));
  if (top <= 1) throw new InvalidArgumentError('--userns=auto: this rootless namespace has no ids beyond root (no subordinate ids in /etc/subuid)');
  return { containerID: 0, hostID: 1, size: Math.min(65536, top - 1) };
}

function parseIdMap(flag: string, v: string): { containerID: number; hostID: number; size: number } {
  const m = /^(\d+):(\d+):(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`--${flag}=${v}: want CONTAINER_ID:HOST_ID:SIZE, e.g. 0:100000:65536`);
  return { containerID: Number(m[1]), hostID: Number(m[2]), size: Number(m[3]) };
}
