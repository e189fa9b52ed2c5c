import { chownSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { capGet, lastCapability } from '@tsbuild/linux';
import { InvalidArgumentError } from '@tsbuild/oci';
import { capabilityMask, resolveCapabilities, type CapabilityChanges } from './capabilities.js';
import type { EtcFiles } from './etc-files.js';
import { compiledProgram, defaultProfileIdentity } from './seccomp/program-cache.js';
import { DEFAULT_SECCOMP_PROFILE } from './seccomp/default-profile.js';
import { parseSeccompProfile, resolveProfile, type ResolvedProfile, type SeccompProfile } from './seccomp/profile.js';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './security-paths.js';
import { type SelinuxLabelOptions, type SelinuxLabels, apparmorProfile, parseLabelOption, selinuxLabels, validateApparmorProfile } from './security-labels.js';
import { warnOnce } from './warn-once.js';

/** One contiguous range of a user namespace's uid or gid map (user_namespaces(7)). */
export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** A user namespace's maps: one uid and one gid range (util-linux 2.38 unshare maps one each). */
export interface UserNamespaceMaps {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
}

/**
 * The security side of a RunSpec. Defaults are docker's: its capability set, its seccomp
 * profile, runc's masked and read-only paths, generated /etc/hosts, resolv.conf and hostname.
 */
export interface SecurityOptions {
  /** `--cap-add` / `--cap-drop` on top of docker's default set. */
  capabilities?: CapabilityChanges;
  /** 'default' (docker's profile), 'unconfined' (no filter) or a profile in docker's JSON format. */
  seccomp?: 'default' | 'unconfined' | SeccompProfile;
  /** PR_SET_NO_NEW_PRIVS before execve: setuid bits and file capabilities grant nothing. */
  noNewPrivileges?: boolean;
  /** Paths hidden from the command; default runc's list (/proc/kcore, /proc/keys, /sys/firmware…). */
  maskedPaths?: string[];
  /** Paths made read-only; default runc's list (/proc/sys, /proc/sysrq-trigger, /proc/irq…). */
  readonlyPaths?: string[];
  /**
   * Contents of /etc/hosts, /etc/resolv.conf and /etc/hostname for this run; never committed
   * (see etc-files.ts). Defaults: localhost plus `<ip> <hostname>`, the host's resolv.conf (minus
   * loopback nameservers off the host network), the hostname.
   */
  etcFiles?: EtcFiles;
  /**
   * Run in a new user namespace: uid/gid 0 inside maps to `hostID` of the range containing
   * containerID 0. Only one range each (util-linux 2.38's --map-users/--map-groups). The rootfs
   * must be usable by the mapped ids: an overlay whose upperdir and workdir belong to the host
   * uid of container root works (files it creates are owned by that uid on the host); lower
   * layers owned by host root appear as nobody and are read-only to the container.
   */
  userns?: UserNamespaceMaps;
  /**
   * SELinux labels (runc's semantics, see security-labels.ts): applied only when asked and
   * SELinux is enabled; otherwise a notice says they are not.
   */
  label?: SelinuxLabelOptions;
  /**
   * An AppArmor profile (loaded already) for the command, or 'unconfined' (the default: tsbuild
   * loads no profile of its own). Where AppArmor is off a notice says it is not applied.
   */
  apparmorProfile?: string;
}

/** What the helper needs: everything resolved and validated by tsbuild, the filter compiled. */
export interface SecurityRequest {
  /** CAP_… names: the bounding, permitted and effective sets. */
  capabilities: string[];
  /** The BPF program (struct sock_filter[], base64); absent for unconfined. */
  seccomp?: string;
  noNewPrivileges: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  etcFiles?: EtcFiles;
  userns?: UserNamespaceMaps;
  /** Written to /proc/thread-self/attr/exec before execve; the mount label goes on tmpfs and the rootfs. */
  selinux?: SelinuxLabels;
  /** Written as `exec PROFILE` to /proc/thread-self/attr/apparmor/exec before execve. */
  apparmorProfile?: string;
}

const compiledDefault = new Map<string, string>();

/**
 * Resolves and validates the security options of a run (before anything starts) and compiles
 * its seccomp filter. With a user namespace, `scratchDir` is given to the namespace's root: the
 * helper, root inside but an unprivileged uid outside, writes the /etc files there.
 */
export function securityRequest(spec: SecurityOptions & { scratchDir: string; rootfs: { options: string[] }[]; cacheDir?: string }): SecurityRequest {
  const capabilities = resolveCapabilities(spec.capabilities, lastCapability(), capGet().permitted);
  const req: SecurityRequest = {
    capabilities,
    noNewPrivileges: spec.noNewPrivileges === true,
    maskedPaths: spec.maskedPaths ?? [...DEFAULT_MASKED_PATHS],
    readonlyPaths: spec.readonlyPaths ?? [...DEFAULT_READONLY_PATHS],
  };
  for (const p of [...req.maskedPaths, ...req.readonlyPaths]) if (!p.startsWith('/')) throw new InvalidArgumentError(`run: masked and read-only paths must be absolute: ${p}`);
  const seccomp = spec.seccomp ?? 'default';
  if (seccomp !== 'unconfined') {
    const key = capabilities.join(',');
    let program = seccomp === 'default' ? compiledDefault.get(key) : undefined;
    if (program === undefined) {
      const profile = seccomp === 'default' ? DEFAULT_SECCOMP_PROFILE : seccomp;
      const kernel = release().replace(/[^\w.+-]/g, '_');
      const resolve = (): ResolvedProfile => resolveProfile(profile, { capabilities: new Set(capabilities), arch: process.arch, kernel });
      // Docker's default profile is named by what decides its program, without a digest to compute.
      const name = seccomp === 'default' ? `default-${defaultProfileIdentity().slice('sha256:'.length, 'sha256:'.length + 32)}-${process.arch}-${kernel}-${capabilityMask(capabilities).toString(16)}` : undefined;
      program = compiledProgram(resolve, spec.cacheDir, name);
      if (seccomp === 'default') compiledDefault.set(key, program);
    }
    req.seccomp = program;
  }
  if (spec.etcFiles !== undefined) req.etcFiles = spec.etcFiles;
  const selinux = selinuxLabels(spec.label);
  if (selinux.notice !== undefined) warnOnce(selinux.notice);
  if (selinux.labels !== undefined) req.selinux = selinux.labels;
  if (spec.apparmorProfile !== undefined) validateApparmorProfile(`apparmor=${spec.apparmorProfile}`, spec.apparmorProfile);
  const apparmor = apparmorProfile(spec.apparmorProfile);
  if (apparmor.notice !== undefined) warnOnce(apparmor.notice);
  if (apparmor.profile !== undefined) req.apparmorProfile = apparmor.profile;
  if (spec.userns !== undefined) {
    // Validated with the rest of the spec before anything starts (run.ts validate).
    req.userns = spec.userns;
    const uid = spec.userns.uidMappings[0]!.hostID;
    const gid = spec.userns.gidMappings[0]!.hostID;
    chownSync(spec.scratchDir, uid, gid);
    // Root inside is `uid` outside: the overlay's upper and work directories must be its own, or
    // nothing the command writes could land in the layer.
    for (const m of spec.rootfs) {
      for (const o of m.options) {
        const dir = /^(?:upperdir|workdir)=(.+)$/.exec(o)?.[1];
        if (dir !== undefined) chownSync(dir, uid, gid);
      }
    }
  }
  return req;
}

/** One uid and one gid range, each starting at id 0 inside: what util-linux unshare maps. */
export function validateUserNamespace(userns: UserNamespaceMaps): void {
  validateMappings(userns.uidMappings, 'uid');
  validateMappings(userns.gidMappings, 'gid');
}

function validateMappings(m: IdMapping[], what: string): void {
  if (m.length !== 1) throw new InvalidArgumentError(`run: userns needs exactly one ${what} mapping (util-linux unshare maps one range), got ${m.length}`);
  const [r] = m;
  for (const v of [r.containerID, r.hostID, r.size]) if (!Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw new InvalidArgumentError(`run: bad ${what} mapping ${JSON.stringify(r)}`);
  if (r.size < 1 || r.containerID !== 0) throw new InvalidArgumentError(`run: the ${what} mapping must start at container id 0 (root inside): ${JSON.stringify(r)}`);
}


/**
 * unshare(1) options for a user namespace: it creates the namespace together with the others (so
 * it owns them), has the maps written, then becomes uid/gid 0 inside before exec'ing the helper.
 * That switch must precede any execve: an exec by a uid that is not root of the namespace drops
 * every capability (capabilities(7), "Capabilities and execution of programs by root").
 */
export function userNamespaceArgs(userns: UserNamespaceMaps): string[] {
  const u = userns.uidMappings[0];
  const g = userns.gidMappings[0];
  return [`--map-users=${u.hostID},${u.containerID},${u.size}`, `--map-groups=${g.hostID},${g.containerID},${g.size}`, '--setuid', '0', '--setgid', '0'];
}

/** The options `--security-opt` sets. */
export type SecurityOptValues = Pick<SecurityOptions, 'seccomp' | 'noNewPrivileges' | 'maskedPaths' | 'readonlyPaths' | 'label' | 'apparmorProfile'>;

const SECURITY_OPTS = 'seccomp=unconfined|PROFILE.json, systempaths=unconfined, no-new-privileges, label=user:U|role:R|type:T|level:L|filetype:T|disable, apparmor=PROFILE|unconfined';

/**
 * `--security-opt` values as docker and podman take them (KEY=VALUE, or the older KEY:VALUE):
 * seccomp=unconfined|PROFILE.json (docker's JSON format), no-new-privileges[=true|false],
 * systempaths=unconfined, label=…, apparmor=…. The one parser of them: the CLI calls it.
 */
export function parseSecurityOpts(values: readonly string[]): SecurityOptValues {
  const out: SecurityOptValues = {};
  for (const v of values) {
    const eq = v.search(/[=:]/);
    const key = eq < 0 ? v : v.slice(0, eq);
    const value = eq < 0 ? undefined : v.slice(eq + 1);
    if (key === 'no-new-privileges') {
      if (value !== undefined && value !== 'true' && value !== 'false') throw new InvalidArgumentError(`--security-opt ${v}: no-new-privileges takes true or false`);
      out.noNewPrivileges = value !== 'false';
    } else if (key === 'seccomp') {
      if (value === undefined || value === '') throw new InvalidArgumentError(`--security-opt ${v}: seccomp needs unconfined or a profile file`);
      if (value === 'unconfined') out.seccomp = 'unconfined';
      else if (value === 'builtin' || value === 'default') out.seccomp = 'default';
      else {
        let text: string;
        try {
          text = readFileSync(value, 'utf8');
        } catch (e) {
          throw new InvalidArgumentError(`--security-opt seccomp: cannot read ${value}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
        }
        out.seccomp = parseSeccompProfile(text, value);
      }
    } else if (key === 'systempaths' && value === 'unconfined') {
      // docker's and podman's: no masked and no read-only paths under /proc and /sys. A tsbuild
      // inside the container needs it: its RUN mounts a fresh proc for its PID namespace, which
      // the kernel refuses while the /proc it can see has paths overmounted (fs/namespace.c
      // mount_too_revealing: an unprivileged proc or sysfs mount must not reveal what is hidden).
      out.maskedPaths = [];
      out.readonlyPaths = [];
    } else if (key === 'label' && value !== undefined) {
      parseLabelOption(v, value, (out.label ??= {}));
    } else if (key === 'apparmor' && value !== undefined) {
      validateApparmorProfile(v, value);
      out.apparmorProfile = value;
    } else {
      throw new InvalidArgumentError(`--security-opt ${v}: want ${SECURITY_OPTS}`);
    }
  }
  return out;
}
