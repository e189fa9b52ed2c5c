import type { Mount } from './mount-spec.js';
import type { SecurityRequest } from './security-spec.js';
import type { ProcessRequest } from './process-spec.js';
import type { HelperErrorCode } from './helper-failure.js';

/**
 * What tsbuild sends a helper on fd 3 and what the helper answers on the same socket: an error
 * line when it fails before the command starts, or EXEC_LINE just before starting it. fd 3 is
 * close-on-exec, so the command never sees it. A run's helper (run-helper.c) reads its request
 * as encodeRunRequest (run-request.ts) writes it; a copy's (helper.ts) reads one JSON line.
 */
export type HelperRequest = RunRequest | CopyRequest;

export interface RunRequest {
  kind: 'run';
  /** Host pid of the `setpriv … unshare` process: the helper's parent, checked on start. */
  chainPid: number;
  target: string;
  rootfs: Mount[];
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  hostname: string;
  network: 'host' | 'none' | 'private';
  /** Mounts inside the rootfs besides /proc, /dev and /sys (RUN --mount), in order. */
  mounts?: ExtraMount[];
  /** Capabilities, seccomp, masked paths, /etc files, user namespace; absent: none applied. */
  security?: SecurityRequest;
  /** rlimits, oom_score_adj, devices, /dev/shm's size, LSM labels (process-spec.ts); absent: none. */
  process?: ProcessRequest;
  /**
   * Give the command a pseudo-terminal from the container's devpts as stdin, stdout, stderr and
   * controlling terminal: the helper sends PTY_LINE with its master's descriptor number, tsbuild
   * takes a copy (pidfd_getfd) and answers PTY_TAKEN_LINE.
   */
  terminal?: boolean;
  /**
   * Run the init (its name, for its argv[0]) as PID 1 with the command as its child: the helper
   * sets everything up as for the command, then executes the init, from INIT_EXE_FD, through the
   * link /dev/init, with `-- ARGS` (runc's order: the init is the container's process, with its
   * credentials, capabilities, seccomp filter, cgroups and terminal).
   */
  init?: string;
}

/** A mount inside the container: a host file or directory bound in, or a fresh tmpfs. */
export interface ExtraMount {
  /** Absolute path inside the container; symlinks on the way resolve inside the rootfs. */
  destination: string;
  type: 'bind' | 'tmpfs';
  /**
   * Bind only: the host directory the source lies in (given by tsbuild, trusted), or the source
   * itself when `sourcePath` is absent.
   */
  source?: string;
  /**
   * Bind only: the source inside `source`, resolved there by the kernel as if `source` were `/`
   * (openat2 RESOLVE_IN_ROOT): symlinks, the last component's too, never lead out of it. For
   * paths that come from a Dockerfile (a build context file, a file of another stage).
   */
  sourcePath?: string;
  /** mount(8)-style options: 'ro', 'rbind', 'nosuid'…; for tmpfs also 'size=64m', 'mode=1777'. */
  options: string[];
}

/**
 * `copy`: every copied entry gets owner uid:gid, except below a source whose `keepOwners[i]` is
 * true, whose entries keep the owners they have (COPY --from keeps the stage's owners, ADD of an
 * archive the archive's: docker's and BuildKit's rule; --chown sets uid:gid for all, and no keepOwners).
 * Hard links are kept among the files of one source; sources with the same `linkGroups[i]` count
 * as one (the matches of one wildcard source of the Dockerfile: BuildKit copies them with one
 * fsutil copier, so with one inode map); without it each source is alone (see HardLinks).
 */
export type CopyOp =
  | { op: 'copy'; sources: string[]; dest: string; uid: number; gid: number; mode?: number; keepOwners?: boolean[]; linkGroups?: number[] }
  | { op: 'mkdir'; path: string; uid: number; gid: number; mode: number };

export interface CopyRequest {
  kind: 'copy';
  chainPid: number;
  target: string;
  rootfs: Mount[];
  ops: CopyOp[];
}

export interface HelperReply {
  error: { code: HelperErrorCode; message: string };
}

/**
 * Sent by the helper once the container is set up, just before it looks the command up and
 * execve's it: from then on the exit status is the command's (or 127/126 when it cannot start).
 */
export const EXEC_LINE = '{"exec":true}';

/** The helper's pty master: `{"pty":FD}`, FD a descriptor of the helper. */
export function ptyLine(fd: number): string {
  return JSON.stringify({ pty: fd });
}

/** The descriptor number of a ptyLine, or undefined for any other line. */
export function parsePtyLine(line: string): number | undefined {
  const m = /^\{"pty":(\d+)\}$/.exec(line);
  return m === null ? undefined : Number(m[1]);
}

/** tsbuild's answer once it holds its copy of the master: the helper may close its own. */
export const PTY_TAKEN_LINE = '{"ptyTaken":true}';

/** Exit status of a helper that failed before execve; the reply on fd 3 says why. */
export const HELPER_SETUP_FAILED = 125;

/**
 * Descriptors the chain starts with beyond the control socket (3) and the command's stderr (4):
 * the helper's executable (run-helper, or node for a copy) and the init's (the helper's again
 * without one), each on a read-only mount of its own (helper-chain.ts). unshare executes the
 * helper through /proc/self/fd/5; the helper closes it first thing, and 6 too unless its request
 * names an init, which it executes through /proc/self/fd/6 (close-on-exec by then: the path is
 * resolved before the descriptors go).
 */
export const HELPER_EXE_FD = 5;
export const INIT_EXE_FD = 6;
