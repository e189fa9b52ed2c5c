import { existsSync, readFileSync } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError, crypto } from '@tsbuild/oci';

/**
 * Linux security module labels of a run, with runc's and podman's semantics (go-selinux
 * label.InitLabels; runc's apparmor.ApplyProfile). The helper writes the process label to
 * /proc/thread-self/attr/exec (SELinux) or attr/apparmor/exec (AppArmor) just before execve, so
 * the command, not the helper, runs under it; tmpfs mounts and the rootfs get `context=`.
 */

/** `--security-opt label=…`: parts of the SELinux context to replace, or no labelling at all. */
export interface SelinuxLabelOptions {
  user?: string;
  role?: string;
  type?: string;
  level?: string;
  /** The type of the container's files (the mount label). */
  filetype?: string;
  /** label=disable: the command runs with tsbuild's own label, mounts get none. */
  disable?: boolean;
}

/** What the helper applies: full contexts (user:role:type:level). */
export interface SelinuxLabels {
  processLabel: string;
  mountLabel: string;
}

/** selinuxfs is mounted, as libselinux's is_selinux_enabled() checks first. */
export function selinuxEnabled(): boolean {
  return existsSync('/sys/fs/selinux/enforce');
}

/** The kernel's AppArmor parameter (what aa_is_enabled() reads). */
export function apparmorEnabled(): boolean {
  try {
    return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
  } catch {
    return false;
  }
}

const NAME = /^[A-Za-z0-9_.-]+$/;
// An MLS/MCS level or range: s0, s0:c1,c2, s0-s0:c0.c1023 (selinux/mls.c's syntax).
const LEVEL = /^s\d+(?::c\d+(?:[.,]c\d+)*)?(?:-s\d+(?::c\d+(?:[.,]c\d+)*)?)?$/;

/** Adds one `label=KEY:VALUE` (or `label=disable`) to `into`; one line naming the option on error. */
export function parseLabelOption(opt: string, value: string, into: SelinuxLabelOptions): void {
  if (value === 'disable') {
    into.disable = true;
    return;
  }
  const colon = value.indexOf(':');
  const key = colon < 0 ? value : value.slice(0, colon);
  const v = colon < 0 ? '' : value.slice(colon + 1);
  if (!['user', 'role', 'type', 'level', 'filetype'].includes(key)) {
    throw new InvalidArgumentError(`--security-opt ${opt}: want label=user:U, role:R, type:T, level:L, filetype:T or disable`);
  }
  if (!(key === 'level' ? LEVEL : NAME).test(v)) throw new InvalidArgumentError(`--security-opt ${opt}: ${v === '' ? 'empty' : 'invalid'} SELinux ${key}${key === 'level' ? ' (want e.g. s0:c1,c2)' : ''}`);
  into[key as 'user' | 'role' | 'type' | 'level' | 'filetype'] = v;
}

/** An AppArmor profile name (or unconfined): one line naming the option on error. */
export function validateApparmorProfile(opt: string, profile: string): void {
  if (profile === '' || /[\s\0]/.test(profile)) throw new InvalidArgumentError(`--security-opt ${opt}: want apparmor=PROFILE or apparmor=unconfined`);
}

/**
 * InitLabels' rule: the defaults are the policy's container contexts (lxc_contexts' `process`
 * and `file`) with one random MCS pair as their level; `user` and `level` replace both labels'
 * fields, `role` and `type` the process label's, `filetype` the mount label's type.
 */
export function composeSelinuxLabels(o: SelinuxLabelOptions, defaults: { process: string; file: string }, mcs: string): SelinuxLabels {
  const split = (ctx: string): string[] => {
    const p = ctx.split(':');
    if (p.length < 3) throw new FailedPreconditionError(`SELinux: not a context in lxc_contexts: ${ctx}`);
    return [p[0]!, p[1]!, p[2]!, p.slice(3).join(':')];
  };
  const pr = split(defaults.process);
  const mo = split(defaults.file);
  pr[3] = mo[3] = mcs;
  if (o.user !== undefined) pr[0] = mo[0] = o.user;
  if (o.role !== undefined) pr[1] = o.role;
  if (o.type !== undefined) pr[2] = o.type;
  if (o.filetype !== undefined) mo[2] = o.filetype;
  if (o.level !== undefined) pr[3] = mo[3] = o.level;
  return { processLabel: pr.join(':'), mountLabel: mo.join(':') };
}

/** The policy's container contexts: /etc/selinux/<SELINUXTYPE>/contexts/lxc_contexts. */
function policyContainerContexts(): { process: string; file: string } {
  const type = /^SELINUXTYPE=(\S+)/m.exec(readIfExists('/etc/selinux/config') ?? '')?.[1] ?? 'targeted';
  const path = `/etc/selinux/${type}/contexts/lxc_contexts`;
  const text = readIfExists(path);
  const get = (k: string): string | undefined => new RegExp(`^\\s*${k}\\s*=\\s*"?([^"\\n]+)"?`, 'm').exec(text ?? '')?.[1]?.trim();
  const process = get('process');
  const file = get('file');
  if (process === undefined || file === undefined) throw new FailedPreconditionError(`SELinux is enabled but ${path} names no container process and file contexts`);
  return { process, file };
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The labels a run gets on this host, or undefined when none apply (with the reason, to say once). */
export function selinuxLabels(o: SelinuxLabelOptions | undefined): { labels?: SelinuxLabels; notice?: string } {
  // As podman's label handling: nothing asked, nothing done (tsbuild does not relabel by default).
  if (o === undefined || o.disable === true) return {};
  if (!selinuxEnabled()) return { notice: 'SELinux is not enabled on this host: --security-opt label options are not applied' };
  // One MCS category pair, as container-selinux's allocator does (c0..c1023, two different).
  const a = crypto().randomInt(1024);
  let b = crypto().randomInt(1023);
  if (b >= a) b++;
  return { labels: composeSelinuxLabels(o, policyContainerContexts(), `s0:c${Math.min(a, b)},c${Math.max(a, b)}`) };
}

/** The AppArmor profile a run gets, after checking it is loaded; undefined when none applies. */
export function apparmorProfile(profile: string | undefined): { profile?: string; notice?: string } {
  if (profile === undefined || profile === 'unconfined') return {};
  if (!apparmorEnabled()) return { notice: `AppArmor is not enabled on this host: --security-opt apparmor=${profile} is not applied` };
  const loaded = readIfExists('/sys/kernel/security/apparmor/profiles');
  if (loaded !== undefined && !loaded.split('\n').some((l) => l.replace(/ \([a-z]+\)$/, '') === profile)) {
    throw new FailedPreconditionError(`AppArmor profile ${profile} is not loaded (see /sys/kernel/security/apparmor/profiles; load it with apparmor_parser)`);
  }
  return { profile };
}
