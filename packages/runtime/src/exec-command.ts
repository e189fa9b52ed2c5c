import { accessSync, constants, existsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { posix } from 'node:path';
import {
  PR,
  becomeSessionLeader,
  capGet,
  capSet,
  clearCloexec,
  cloexecFrom,
  dup2,
  execve,
  getResourceLimit,
  limitBoundingSet,
  loadSeccompFilter,
  peerClosed,
  prctl,
  setGroups,
  setKeepCapabilities,
  setNoNewPrivileges,
  setResGid,
  setResourceLimit,
  setResUid,
  setThreadGroups,
  setThreadResGid,
  setThreadResUid,
  threadCredentialsSupported,
} from '@tsbuild/linux';
import { DEFAULT_PATH } from '@tsbuild/oci';
import { capabilityMask } from './capabilities.js';
import { EXEC_LINE, type RunRequest } from './helper-protocol.js';
import { HelperFailure } from './helper-failure.js';
import { makeDirectories } from './make-directories.js';

const SIGKILL = 9;
/** The link to the init's descriptor that enterContainer makes in the container's /dev. */
const INIT_PATH = '/dev/init';

/**
 * Last step of the helper, inside the container: working directory, credentials, descriptor hygiene,
 * then execve(2) so the command replaces the helper as PID 1 of the PID namespace. On failure to
 * start the command it exits 127 (not found) or 126 (not executable), as shells do.
 */
export function execCommand(req: RunRequest, controlFd: number, terminal?: number): never {
  if (!req.cwd.startsWith('/')) throw new HelperFailure('INVALID_ARGUMENT', `working directory must be absolute: ${req.cwd}`);
  // After pivot_root: the path resolves in the container's root (magic links of /proc aside, see
  // below). Created as root, as docker does.
  try {
    makeDirectories(req.cwd);
    process.chdir(req.cwd);
    // A /proc/self/fd/N or /proc/self/cwd magic link can lead to a directory outside the root
    // (runc CVE-2024-21626: a leaked descriptor of a host directory as WORKDIR). getcwd(3) fails
    // with ENOENT for a directory the root does not reach ("(unreachable)", getcwd(2)).
    process.cwd();
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot use working directory ${req.cwd}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (terminal !== undefined) {
    // A session of its own with the pty as its controlling terminal, and the pty as 0, 1 and 2.
    becomeSessionLeader(terminal);
    for (const fd of [0, 1, 2]) dup2(terminal, fd);
  }

  // While the helper still has CAP_SYS_RESOURCE: raising a hard limit needs it (setrlimit(2)), so
  // does an oom_score_adj below the current one (proc(5)). Both survive execve.
  setLimits(req);
  dropPrivileges(req);
  // Last, as runc does: the label applies at the next execve, and the steps above run under ours.
  setExecLabels(req);
  // A credential change clears the parent-death signal unshare --kill-child set (prctl(2),
  // PR_SET_PDEATHSIG), so set it again, then check that tsbuild did not die (or give up) in the
  // meantime: its end of the control socket closes when it does.
  prctl(PR.SET_PDEATHSIG, SIGKILL);
  if (peerClosed(controlFd)) process.exit(128 + SIGKILL);
  // From here on the exit status is the command's, or 127/126 as a shell would answer.
  writeSync(controlFd, `${EXEC_LINE}\n`);

  const env = req.env;
  const name = req.args[0];
  const resolved = findExecutable(name, env);
  if ('error' in resolved) fail(resolved.status, resolved.error);

  cloexecFrom(3);
  for (const fd of [0, 1, 2]) clearCloexec(fd);
  if (req.init !== undefined) {
    // The init in our place, as PID 1, with all of the above; it finds the command as a shell
    // would (execvp in the container's PATH, checked above) and starts it as its child. The link
    // leads through /proc/self/fd to the init's descriptor, resolved before close-on-exec closes it.
    try {
      execve(INIT_PATH, [req.init, '--', ...req.args], env);
    } catch (e) {
      fail(126, `${req.init} (the init): cannot execute: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  try {
    execve(resolved.path, req.args, env);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(127, `${name}: not found`);
    fail(126, `${name}: cannot execute: ${code === 'ENOEXEC' ? 'exec format error' : code === 'EACCES' ? 'permission denied' : String(code)}`);
  }
}

/**
 * Credentials and confinement, in the order the kernel allows them (runc does the same):
 *  1. drop what the container may not have from the bounding set (needs CAP_SETPCAP, still ours);
 *  2. PR_SET_KEEPCAPS, then groups, gid, uid: a switch from root to another uid clears the
 *     effective set but, with keepcaps, not the permitted one (capabilities(7));
 *  3. raise effective to permitted again, so CAP_SYS_ADMIN is there for seccomp: loading a filter
 *     needs it or no_new_privs (seccomp(2)), and docker leaves no_new_privs off unless asked;
 *  4. no_new_privs if asked, then the seccomp filter: after the uid switch, so the filter never
 *     sees the helper's own setup calls, only capset/prctl and the execve path (all of which
 *     docker's profile allows);
 *  5. capset: permitted = effective = the container's set, inheritable empty, no ambient (docker's
 *     choice). execve then keeps them for root; for another uid permitted and effective come out
 *     empty (no file capabilities, no ambient), which is what docker shows too.
 */
function dropPrivileges(req: RunRequest): void {
  const sec = req.security;
  const caps = sec === undefined ? undefined : capabilityMask(sec.capabilities);
  step('limit the bounding set', () => {
    if (caps !== undefined) {
      limitBoundingSet(caps);
      setKeepCapabilities(true);
    }
  });
  // Groups first: after setresuid to a user other than root the process may no longer change them.
  step(`switch to user ${req.uid}:${req.gid}`, () => {
    // Only this thread needs them: it execve's, which ends every other one (thread-credentials.ts).
    if (threadCredentialsSupported()) {
      setThreadGroups(req.additionalGids);
      setThreadResGid(req.gid);
      setThreadResUid(req.uid);
    } else {
      setGroups(req.additionalGids);
      setResGid(req.gid);
      setResUid(req.uid);
    }
  });
  if (caps !== undefined) {
    step('raise effective capabilities', () => {
      const now = capGet();
      capSet({ effective: now.permitted, permitted: now.permitted, inheritable: 0n });
    });
  }
  if (sec?.noNewPrivileges === true) step('set no_new_privs', () => setNoNewPrivileges());
  if (sec?.seccomp !== undefined) step('load the seccomp filter', () => loadSeccompFilter(Buffer.from(sec.seccomp as string, 'base64')));
  if (caps !== undefined) {
    step('set capabilities', () => {
      capSet({ effective: caps, permitted: caps, inheritable: 0n });
      setKeepCapabilities(false);
    });
  }
}

function setLimits(req: RunRequest): void {
  const p = req.process;
  if (p === undefined) return;
  for (const l of p.rlimits) {
    step(`set ulimit ${l.name}=${l.soft}:${l.hard}`, () => {
      if (l.orLower !== true) {
        setResourceLimit(l.resource, l.soft, l.hard);
        return;
      }
      // A default never fails the run: without CAP_SYS_RESOURCE (rootless) it stays within ours.
      const { hard } = getResourceLimit(l.resource);
      const cap = (v: number): bigint => (v === -1 ? hard : BigInt(v) < hard ? BigInt(v) : hard);
      setResourceLimit(l.resource, cap(l.soft), cap(l.hard));
    });
  }
  if (p.oomScoreAdj !== undefined) step(`set oom_score_adj ${p.oomScoreAdj}`, () => writeFileSync('/proc/self/oom_score_adj', String(p.oomScoreAdj)));
}

/**
 * SELinux's process label (attr/exec) and AppArmor's profile (attr/apparmor/exec, Linux 5.8+, or
 * the shared attr/exec before), both taking effect at execve, on this thread: the one that
 * execve's (runc's label.SetProcessLabel and apparmor.ApplyProfile).
 */
function setExecLabels(req: RunRequest): void {
  const sec = req.security;
  if (sec?.selinux !== undefined) step(`set the SELinux label ${sec.selinux.processLabel}`, () => writeFileSync('/proc/thread-self/attr/exec', sec.selinux!.processLabel));
  const profile = sec?.apparmorProfile;
  if (profile !== undefined) {
    step(`set the AppArmor profile ${profile}`, () => {
      const dedicated = '/proc/thread-self/attr/apparmor/exec';
      writeFileSync(existsSync(dedicated) ? dedicated : '/proc/thread-self/attr/exec', `exec ${profile}`);
    });
  }
}

function step(what: string, f: () => void): void {
  try {
    f();
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot ${what}: ${(e as Error).message}`);
  }
}

/** execvp(3)'s search, on the PATH of the command's own environment. */
export function findExecutable(name: string, env: string[]): { path: string } | { status: number; error: string } {
  if (name.includes('/')) return { path: name };
  const pathVar = env.findLast((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  let denied: string | undefined;
  for (const dir of pathVar.split(':')) {
    const candidate = posix.join(dir === '' ? '.' : dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
    } catch {
      continue;
    }
    try {
      accessSync(candidate, constants.X_OK);
      return { path: candidate };
    } catch {
      denied ??= candidate;
    }
  }
  if (denied !== undefined) return { status: 126, error: `${denied}: permission denied` };
  return { status: 127, error: `${name}: command not found in PATH ${pathVar}` };
}

function fail(status: number, message: string): never {
  writeSync(2, `tsbuild: ${message}\n`);
  process.exit(status);
}
