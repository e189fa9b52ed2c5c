import { realpathSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { major, minor } from '@tsbuild/linux';
import { InvalidArgumentError, NotFoundError } from '@tsbuild/oci';
import { type RlimitRequest, type Ulimit, rlimitRequests, validateOomScoreAdj, validateUlimit } from './rlimits.js';

/** A host device node given to the container (docker's --device HOST[:CONTAINER[:ACCESS]]). */
export interface DeviceMapping {
  /** Absolute host path of a character or block device (a symlink to one is followed). */
  hostPath: string;
  /** Where it appears in the container, under /dev; default `hostPath`. */
  containerPath?: string;
  /** The device cgroup access: some of r (read), w (write), m (mknod); default 'rwm'. */
  access?: string;
}

/** A tmpfs of the run's own (docker's and podman's --tmpfs PATH[:OPTIONS]). */
export interface TmpfsMount {
  destination: string;
  /** mount(8) options: ro, nosuid, size=10m, mode=1777… (see parseTmpfs for what --tmpfs takes). */
  options: string[];
}

/**
 * The process side of a RunSpec: what the helper sets on itself before execve (rlimits,
 * oom_score_adj) and the /dev it makes (devices, /dev/shm's size), plus tmpfs mounts.
 */
export interface ProcessOptions {
  /** setrlimit(2) limits by docker's names; on top of DEFAULT_ULIMITS (buildah's nofile and nproc). */
  ulimits?: Ulimit[];
  /** /proc/self/oom_score_adj of the command, -1000..1000; default: tsbuild's own (inherited). */
  oomScoreAdj?: number;
  /** Host device nodes bound into the container's /dev, and allowed by its device cgroup. */
  devices?: DeviceMapping[];
  /** Bytes of the /dev/shm tmpfs; default 64 MiB (docker's and buildah's 65536k). */
  shmSize?: number;
  /** tmpfs mounts, made after the rootfs as RunSpec.mounts are. */
  tmpfs?: TmpfsMount[];
}

/** A device resolved on the host: what the helper binds and the cgroup allows. */
export interface DeviceNode {
  /** The host node itself (symlinks resolved). */
  hostPath: string;
  containerPath: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  access: string;
}

/** What the helper gets (helper-protocol.ts RunRequest.process), validated and resolved. */
export interface ProcessRequest {
  rlimits: RlimitRequest[];
  oomScoreAdj?: number;
  devices: DeviceNode[];
  shmSize?: number;
}

/** Entries of the container's /dev that tsbuild itself makes: no device goes in or over them. */
const RESERVED_DEV = new Set(['pts', 'shm', 'mqueue', 'fd', 'stdin', 'stdout', 'stderr', 'ptmx']);

/**
 * Validates the process options of a run and resolves its devices on the host, before anything
 * starts; one line naming the value on any error.
 */
export function processRequest(spec: ProcessOptions): ProcessRequest {
  for (const u of spec.ulimits ?? []) validateUlimit(u);
  if (spec.oomScoreAdj !== undefined) validateOomScoreAdj(spec.oomScoreAdj);
  if (spec.shmSize !== undefined) validateShmSize(spec.shmSize);
  for (const t of spec.tmpfs ?? []) if (!posix.isAbsolute(t.destination)) throw new InvalidArgumentError(`run: tmpfs destination must be absolute: ${t.destination}`);
  const devices = (spec.devices ?? []).map((d) => resolveDevice(d));
  const seen = new Set<string>();
  for (const d of devices) {
    if (seen.has(d.containerPath)) throw new InvalidArgumentError(`run: two devices at ${d.containerPath}`);
    seen.add(d.containerPath);
  }
  return {
    rlimits: rlimitRequests(spec.ulimits),
    ...(spec.oomScoreAdj !== undefined ? { oomScoreAdj: spec.oomScoreAdj } : {}),
    devices,
    ...(spec.shmSize !== undefined ? { shmSize: spec.shmSize } : {}),
  };
}

/** /dev/shm's size: a tmpfs needs at least one page; docker refuses 0 and below. */
export function validateShmSize(bytes: number, where = `run: shmSize ${bytes}`): void {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`${where}: want a size above 0, such as 64m`);
}

/**
 * The one check of a device mapping: the host path must name a character or block device (as
 * runc's devices.DeviceFromPath; a symlink such as /dev/disk/by-id/… is followed), the container
 * path must lie in the container's /dev (a node elsewhere would be a mountpoint in the layer), and
 * the access is cgroup syntax.
 */
export function resolveDevice(d: DeviceMapping, where = `run: device ${d.hostPath}`): DeviceNode {
  if (!posix.isAbsolute(d.hostPath)) throw new InvalidArgumentError(`${where}: the host path must be absolute`);
  let real: string;
  let st;
  try {
    real = realpathSync(d.hostPath);
    st = statSync(real);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`${where}: no such device on this host`);
    throw new InvalidArgumentError(`${where}: ${code ?? (e as Error).message}`);
  }
  if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new InvalidArgumentError(`${where}: not a device node (want a character or block device)`);
  const containerPath = posix.normalize(d.containerPath ?? d.hostPath);
  if (!containerPath.startsWith('/dev/') || containerPath.endsWith('/')) throw new InvalidArgumentError(`${where}: the container path must be a file under /dev: ${d.containerPath ?? d.hostPath}`);
  if (RESERVED_DEV.has(containerPath.split('/')[2]!)) throw new InvalidArgumentError(`${where}: ${containerPath} is made by the runtime (pts, shm, mqueue, fd, std*, ptmx)`);
  const access = d.access ?? 'rwm';
  if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) throw new InvalidArgumentError(`${where}: access must be some of r, w and m: ${access}`);
  return { hostPath: real, containerPath, type: st.isCharacterDevice() ? 'c' : 'b', major: major(st.rdev), minor: minor(st.rdev), access };
}

/**
 * docker's `--device HOST[:CONTAINER][:ACCESS]` (`/dev/sda:/dev/xvda:rwm`, `/dev/fuse:rw`):
 * a second field without a slash is the access.
 */
export function parseDevice(text: string): DeviceMapping {
  const parts = text.split(':');
  if (parts.length > 3 || parts[0] === '') throw new InvalidArgumentError(`--device ${text}: want HOST[:CONTAINER[:ACCESS]], e.g. /dev/fuse or /dev/sdb:/dev/xvdb:rw`);
  const [hostPath, second, third] = parts as [string, string | undefined, string | undefined];
  const m: DeviceMapping = { hostPath };
  if (third !== undefined) {
    m.containerPath = second!;
    m.access = third;
  } else if (second !== undefined) {
    if (second.startsWith('/')) m.containerPath = second;
    else m.access = second;
  }
  resolveDevice(m, `--device ${text}`);
  return m;
}

/** tmpfs options --tmpfs takes (podman's list; mount(8) and tmpfs(5) spellings). */
const TMPFS_FLAGS = new Set(['ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'sync', 'async', 'dirsync', 'noatime', 'atime', 'nodiratime', 'diratime', 'relatime', 'norelatime', 'strictatime']);
const TMPFS_DATA = /^(size=\d+[kmgKMG%]?|nr_inodes=\d+[kmgKMG]?|mode=[0-7]{3,4}|uid=\d+|gid=\d+)$/;

/**
 * podman's `--tmpfs PATH[:OPTIONS]` (`/run:rw,size=10m,mode=1777`): defaults rw, noexec, nosuid,
 * nodev (podman's and docker's), which later options override (`exec`).
 */
export function parseTmpfs(text: string): TmpfsMount {
  const colon = text.indexOf(':');
  const dest = colon < 0 ? text : text.slice(0, colon);
  const given = colon < 0 ? [] : text.slice(colon + 1).split(',');
  if (!posix.isAbsolute(dest)) throw new InvalidArgumentError(`--tmpfs ${text}: the path must be absolute`);
  if (posix.normalize(dest) === '/') throw new InvalidArgumentError(`--tmpfs ${text}: cannot mount over /`);
  for (const o of given) {
    if (!TMPFS_FLAGS.has(o) && !TMPFS_DATA.test(o)) throw new InvalidArgumentError(`--tmpfs ${text}: unknown option ${o === '' ? '(empty)' : o} (want ro, rw, [no]exec, [no]suid, [no]dev, size=, mode=, uid=, gid=, nr_inodes=)`);
  }
  return { destination: posix.normalize(dest), options: ['rw', 'noexec', 'nosuid', 'nodev', ...given] };
}
