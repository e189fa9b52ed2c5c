import { DEFAULT_CAPABILITIES } from './capabilities.js';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './security-paths.js';
import type { ResolvedProfile } from './seccomp/profile.js';
/**
 * config.json of an OCI runtime bundle (opencontainers/runtime-spec 1.0, config.md and
 * config-linux.md), for the subset a RUN needs. The defaults mirror docker's and runc's: docker's
 * capability set, the runtime spec's default filesystems, runc's masked and read-only paths.
 */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    consoleSize?: { height: number; width: number };
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    noNewPrivileges: boolean;
    rlimits?: { type: string; hard: number; soft: number }[];
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath?: string;
    resources: { devices: { allow: boolean; access: string }[] };
    seccomp?: OciSeccomp;
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}


/** runc's masked and read-only paths, the same lists the built-in runtime applies. */
export const MASKED_PATHS = [...DEFAULT_MASKED_PATHS];
export const READONLY_PATHS = [...DEFAULT_READONLY_PATHS];

export interface BundleOptions {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  user: { uid: number; gid: number; additionalGids: number[] };
  hostname: string;
  /** 'host': no network namespace; 'none': a new one (the runtime brings lo up); a path: join it. */
  network: 'host' | 'none' | { path: string };
  /** cgroupsPath, relative to each hierarchy's root. */
  cgroupsPath?: string;
  /** Files bound read-only over /etc/<name> (hosts, hostname, resolv.conf). */
  etcFiles?: Record<string, string>;
  /** The container's capabilities (default: docker's set). */
  capabilities?: string[];
  noNewPrivileges?: boolean;
  /** A resolved seccomp profile, in the runtime spec's own shape (config-linux.md, "Seccomp"). */
  seccomp?: ResolvedProfile;
  /** A pseudo-terminal for the process (process.terminal), of this size if given. */
  terminal?: { size?: { rows: number; columns: number } };
  /**
   * A static init's host path: bound read-only at /dev/init and run as the process, with `--
   * ARGS`, as the built-in runtime does (PID 1 shows as `init`).
   */
  init?: string;
}

export function ociSpec(o: BundleOptions): OciSpec {
  const namespaces: { type: string; path?: string }[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }];
  if (o.network === 'none') namespaces.push({ type: 'network' });
  else if (o.network !== 'host') namespaces.push({ type: 'network', path: o.network.path });
  const caps = o.capabilities ?? [...DEFAULT_CAPABILITIES];
  const mounts: OciSpec['mounts'] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
  for (const [name, source] of Object.entries(o.etcFiles ?? {})) {
    mounts.push({ destination: `/etc/${name}`, type: 'bind', source, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
  }
  if (o.init !== undefined) mounts.push({ destination: '/dev/init', type: 'bind', source: o.init, options: ['bind', 'ro', 'nosuid', 'nodev'] });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: o.terminal !== undefined,
      ...(o.terminal?.size !== undefined ? { consoleSize: { height: o.terminal.size.rows, width: o.terminal.size.columns } } : {}),
      user: { uid: o.user.uid, gid: o.user.gid, ...(o.user.additionalGids.length > 0 ? { additionalGids: o.user.additionalGids } : {}) },
      args: o.init !== undefined ? ['/dev/init', '--', ...o.args] : o.args,
      env: o.env,
      cwd: o.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: o.noNewPrivileges ?? false,
    },
    root: { path: o.rootfs, readonly: false },
    hostname: o.hostname,
    mounts,
    linux: {
      namespaces,
      ...(o.cgroupsPath !== undefined ? { cgroupsPath: o.cgroupsPath } : {}),
      // Deny every device but the defaults the runtime always allows (null, zero, full, tty,
      // urandom, random, pts, ptmx), as runc's own `runc spec` does.
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      ...(o.seccomp ? { seccomp: ociSeccomp(o.seccomp) } : {}),
    },
  };
}

/** A resolved profile in the runtime spec's seccomp shape (docker's JSON, which runc reads). */
function ociSeccomp(p: ResolvedProfile): OciSeccomp {
  return {
    defaultAction: p.defaultAction,
    ...(p.defaultErrnoRet !== undefined ? { defaultErrnoRet: p.defaultErrnoRet } : {}),
    architectures: p.architectures,
    syscalls: p.rules.map((r) => ({
      names: r.names,
      action: r.action,
      ...(r.errnoRet !== undefined ? { errnoRet: r.errnoRet } : {}),
      ...(r.args.length > 0
        ? { args: r.args.map((a) => ({ index: a.index, value: Number(a.value), ...(a.valueTwo !== undefined ? { valueTwo: Number(a.valueTwo) } : {}), op: a.op })) }
        : {}),
    })),
  };
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: { names: string[]; action: string; errnoRet?: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] }[];
}
