import type { Readable, Writable } from 'node:stream';
import type { Resources } from './cgroups/cgroup-resources.js';
import type { ExtraMount } from './helper-protocol.js';
import type { Mount } from './mount-spec.js';
import type { SecurityOptions } from './security-spec.js';
import type { ProcessOptions } from './process-spec.js';

// The contract of run() on its own: both ways of running (the built-in helper chain in run.ts and
// an external OCI runtime in external-runtime.ts) take these, and neither imports the other for them.

/**
 * One RUN: a command in its own mount, PID, UTS and IPC namespaces (and network namespace with
 * network 'none'), with `rootfs` as / and the command as PID 1. Nothing it mounts outlives it.
 */
export interface RunSpec extends SecurityOptions, ProcessOptions {
  /** argv; args[0] is searched in the PATH of `env` (inside the rootfs) when it has no '/'. */
  args: string[];
  /** KEY=VALUE */
  env: string[];
  /** Absolute, inside the rootfs; created (0755, root) if missing, as Docker does. */
  cwd: string;
  /** Default 0:0 with no supplementary groups. */
  user?: { uid: number; gid: number; additionalGids?: number[] };
  /** Default: a short random hex id. */
  hostname?: string;
  /** Mounted in order at one fresh directory (the first is the root), then pivot_root into it. */
  rootfs: Mount[];
  /**
   * More mounts inside the rootfs (RUN --mount): each host `source` (a file or directory; for
   * tmpfs its options say size and mode) mounted at `destination` after the rootfs and before
   * pivot_root. A missing mountpoint is created in the rootfs (a directory, or an empty file for a
   * file source); the caller removes it afterwards if it should not stay in a layer.
   */
  mounts?: ExtraMount[];
  /** A host directory this run may use (the mountpoint lives here); run() removes it. */
  scratchDir: string;
  /**
   * A directory where runs keep what they compute alike for later runs (compiled seccomp
   * programs), to be trusted as the store is: whoever may write there may replace a run's seccomp
   * filter. Default: none, everything is computed each time.
   */
  cacheDir?: string;
  /**
   * 'host' (default) shares the host's network; 'none' is a network namespace with only lo, up;
   * 'private' is a network namespace with lo and eth0 on the bridge tsbuild0 (10.123.0.0/16), NAT
   * to whatever the host reaches (see network/private-network.ts).
   */
  network?: 'host' | 'none' | 'private';
  /**
   * Limits, enforced through a cgroup of the run's own (see cgroups/run-cgroup.ts). Without any,
   * the run still gets a cgroup where the kernel offers a process-tracking one (cgroup v2, or the
   * unified hierarchy of a hybrid v1 setup), used to kill everything it left behind.
   */
  resources?: Resources;
  /**
   * Run an init (a statically linked tini, catatonit or dumb-init from the host's PATH, tini-static
   * first) as PID 1, with the command as its child: it reaps orphaned zombies and forwards signals
   * to the command, which as PID 1 itself would ignore every signal it has no handler for. The
   * init is the container's process, as under runc: it starts where the command would have (the
   * run's user, capabilities, seccomp filter, cgroups, terminal), from a read-only mount, through
   * the link /dev/init, and shows as `init`.
   */
  init?: boolean;
  /**
   * An OCI runtime to use instead of the built-in one: 'runc', 'crun' or a path. run() writes an
   * OCI bundle (config.json) and runs `<runtime> run --bundle` (see external-runtime.ts).
   */
  runtime?: string;
}

export interface RunIO {
  /** Default 'ignore'. */
  stdin?: 'inherit' | 'ignore' | Readable;
  /** A Writable receives the output and is not ended: one stream may collect several runs. */
  stdout: Writable | 'inherit';
  stderr: Writable | 'inherit';
  /**
   * A pseudo-terminal for the command (docker run -t): from the container's own devpts, it is the
   * command's stdin, stdout, stderr and controlling terminal. tsbuild relays `stdin` to it (a
   * terminal stdin in raw mode, so ^C and the like reach the command) and what it prints to
   * `stdout`; stderr arrives merged into it, as on any terminal. `sizeFrom` (a terminal, usually
   * process.stdout) gives it its rows and columns, again on each resize. With an external runtime
   * the runtime itself makes and relays the pty (runc's foreground "new terminal" mode), which
   * needs a terminal on tsbuild's side: `stdin` 'inherit' from one, or a controlling terminal.
   */
  terminal?: { sizeFrom?: NodeJS.WriteStream };
}

export interface RunResult {
  /** The command's exit status; 128 + n when killed by signal n; 127/126 when it could not start. */
  exitCode: number;
  /** The name of the signal that killed the command, if one did. */
  signal?: string;
  /** The kernel's OOM killer killed a process of the run because of `resources.memory`. */
  oomKilled: boolean;
  /** What the run cost, from its cgroup: absent when it had none (rootless without delegation, an OCI runtime). */
  usage?: RunUsage;
}

/** A run's cost as its cgroup counted it (RunResult.usage). */
export interface RunUsage {
  /** CPU time, user + system, of every process of the run (v1 cpuacct.usage, v2 cpu.stat usage_usec). */
  cpuMs?: number;
  /** The most memory the run held at once (v1 memory.max_usage_in_bytes, v2 memory.peak: Linux 5.19+). */
  peakMemoryBytes?: number;
  /**
   * Bytes written to block devices on the run's account (v1 blkio.throttle.io_service_bytes_recursive
   * `Write`, v2 io.stat `wbytes`). Page-cache writes count once written back: v2 charges the
   * writeback to the cgroup that dirtied the pages (cgroup-v2.rst, "Writeback"), v1 only I/O the
   * run's own tasks issue (fsync, O_DIRECT), so a short run's buffered writes may not show yet.
   */
  writtenBytes?: number;
}

