import { closeSync, existsSync, mkdirSync, openSync, readFileSync, symlinkSync, write } from 'node:fs';
import { posix } from 'node:path';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { constants } from 'node:os';
import {
  AlreadyExistsError,
  CancelledError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  TsbuildError,
} from '@tsbuild/oci';
import { type SpawnStdio, type SpawnedProcess, readOnlyFileMount, spawnProcess, takeDescriptor, toolPath } from '@tsbuild/linux';
import { EXEC_LINE, HELPER_EXE_FD, PTY_TAKEN_LINE, parsePtyLine, type CopyRequest, type HelperReply, type RunRequest } from './helper-protocol.js';
import { helperPath, idMapTools, runHelperPath } from './package-files.js';
import { encodeRunRequest, frameRunRequest } from './run-request.js';
import { type UserNamespaceMaps, userNamespaceArgs } from './security-spec.js';

export interface ChainOptions {
  /** 'none' and 'private' get a new network namespace ('private' is wired by `beforeRequest`). */
  network: 'host' | 'none' | 'private';
  /**
   * An init (a static tini, catatonit, dumb-init: any that takes `-- PROGRAM ARGS`; init.ts) to
   * run as PID 1 of the PID namespace with the command as its child: its read-only descriptor goes
   * to the helper (INIT_EXE_FD), which executes it in place of the command once the container is
   * set up, when its request says so (RunRequest.init).
   */
  init?: string;
  /**
   * Called with the host pid of the chain's first process in the new namespaces (the helper, or
   * the init) before the request is sent, i.e. before the helper does anything: the network
   * namespace exists by then (unshare(2) came before the fork). A rejection kills the chain and
   * run() rejects with it.
   */
  beforeRequest?: (containerPid: number) => Promise<void>;
  /**
   * fds 0, 1 and 2 of the command. Its stderr reaches the helper as fd 4, which the helper makes
   * fd 2 just before execve: the chain's own fd 2 is a pipe to us, so util-linux's and Node's
   * messages never mix with the command's output and tell us what went wrong.
   */
  stdio: [StdioMode, StdioMode, 'inherit' | 'pipe'];
  signal?: AbortSignal;
  /** Called once the chain is spawned, with its stdio streams when piped. */
  onSpawn?: (streams: { stdin: Writable | null; stdout: Readable | null; stderr: Readable | null }) => void;
  /**
   * With a `terminal` request: called with tsbuild's copy of the pty master (a descriptor the
   * caller then owns), before the command starts. A throw fails the run.
   */
  onTerminal?: (master: number) => void;
}

export type StdioMode = 'ignore' | 'inherit' | 'pipe';

export interface ChainResult {
  exitCode: number;
  signal?: string;
  /** What util-linux and the helper's Node wrote on their stderr (not the command's). */
  diagnostics: string;
  /** The helper got as far as execve (a RUN); false for a copy. */
  execed: boolean;
}

/** The request without the pid only known once spawned. */
export type Request = Omit<RunRequest, 'chainPid'> | Omit<CopyRequest, 'chainPid'>;

/**
 * What the chain's command line depends on, known before the rest of the request: a run can start
 * its chain first and prepare the request (cgroup, seccomp program) while the helper is moved
 * into the run's cgroups (CgroupMove).
 */
export interface ChainShape {
  kind: Request['kind'];
  /** The request's target: the exe links are made next to it. */
  target: string;
  /** The run's user namespace (unshare maps it), as the request's security.userns will say. */
  userns?: UserNamespaceMaps;
  /** A `terminal` run request. */
  terminal?: boolean;
}

/** A started chain whose helper waits for its request. */
export interface Chain {
  /**
   * Moves the helper into these cgroups (their cgroup.procs files) from here, before the request
   * goes out, so that the command and all it forks start inside. Called before `send`, as soon as
   * the cgroups exist: the move overlaps the helper's start-up (see CgroupMove).
   */
  joinCgroups(procsFiles: string[]): void;
  /** Sends the request and resolves (or rejects) as runChain does. Called once. */
  send(request: Request): Promise<ChainResult>;
  /** Sends nothing: the helper reads the end of its control socket and exits. Resolves once the chain is gone. */
  abandon(): Promise<void>;
}

/** Starts the helper in fresh namespaces and waits for it (or the command it became) to end. */
export async function runChain(request: Request, opts: ChainOptions): Promise<ChainResult> {
  const userns = request.kind === 'run' ? request.security?.userns : undefined;
  const terminal = request.kind === 'run' && request.terminal === true;
  return startChain({ kind: request.kind, target: request.target, ...(userns !== undefined ? { userns } : {}), terminal }, opts).send(request);
}

/**
 * Starts the chain; its helper starts and waits for the request that `send` gives it.
 *
 * Lifetime, whatever happens to tsbuild:
 *  - setpriv --pdeathsig KILL: setpriv execs unshare, which keeps the signal, so unshare is
 *    SIGKILLed when the tsbuild thread that spawned it dies, kill -9 included;
 *  - unshare --kill-child: its forked child (the helper, then the command: PID 1 of the new PID
 *    namespace) gets SIGKILL when unshare dies;
 *  - when PID 1 of a PID namespace dies the kernel kills every other process in it
 *    (pid_namespaces(7)), and with the last of them goes the mount namespace and every mount in it;
 *  - a helper whose control socket ends before a request arrives exits at once (tsbuild died,
 *    or abandoned the chain).
 * An abort closes the control socket, SIGKILLs PID 1 and unshare, and waits until they are gone.
 */
export function startChain(shape: ChainShape, opts: ChainOptions): Chain {
  let requested!: (r: Request | undefined) => void;
  const requestReady = new Promise<Request | undefined>((resolve) => (requested = resolve));
  const move = new CgroupMove();
  const result = chainResult(shape, opts, requestReady, move);
  // Whatever happens before `send` is awaited is reported by it (or dropped by `abandon`).
  result.catch(() => {});
  let used = false;
  const use = (): void => {
    if (used) throw new Error('internal error: a helper chain takes one request');
    used = true;
  };
  return {
    joinCgroups: (procsFiles) => move.cgroups(procsFiles),
    send: (request) => {
      use();
      move.cgroups([]);
      requested(request);
      return result;
    },
    abandon: async () => {
      use();
      move.cgroups([]);
      requested(undefined);
      await result.then(
        () => {},
        () => {},
      );
    },
  };
}

/**
 * Spawns the chain of `shape`, whose helper runs from a read-only mount of its binary (run-helper
 * for a run; node running helper.cjs for a copy), with the init's read-only descriptor: for a run
 * without a user namespace of its own, run-helper itself, which enters the namespaces as setpriv
 * and unshare would (run-helper.c enter_namespaces), two programs fewer to execute beside
 * tsbuild's preparation; otherwise setpriv, unshare into the namespaces (util-linux maps the ids
 * of a user namespace), then the helper. Throws a FailedPreconditionError when the helper or those
 * mounts cannot be had; a spawn that fails later (no setpriv) is the child's 'error' event.
 */
function spawnChain(shape: ChainShape, opts: Pick<ChainOptions, 'network' | 'init' | 'stdio'>): SpawnedProcess {
  const run = shape.kind === 'run';
  const helper = run ? runHelperPath() : helperPath();
  if (!existsSync(helper)) throw new FailedPreconditionError(`the runtime helper is missing (build @tsbuild/runtime): ${helper}`);
  const userns = shape.userns;
  const direct = entersItsOwnNamespaces(shape);
  const args = direct ? [] : ['--pdeathsig', 'KILL', '--', 'unshare', '--mount', '--uts', '--ipc', '--pid', '--fork', '--kill-child'];
  if (!direct) {
    // A user namespace (security-spec.ts): unshare maps the ids and becomes root inside first.
    if (userns !== undefined) args.push(...userNamespaceArgs(userns));
    if (opts.network !== 'host') args.push('--net');
    args.push('--');
  }
  // Always both descriptors (the helper's twice without an init): the helper closes what it does
  // not execute, and an fd 6 left to node would be one of its own (its epoll or signal pipe), closed under it.
  const exe = readOnlyExecutable(run ? helper : process.execPath);
  const exes = [exe, opts.init !== undefined ? readOnlyExecutable(opts.init) : exe];
  // Executed through a symlink to /proc/self/fd/5, resolved in the /proc/self of the process that
  // executes it (unshare, or our spawn's child): the kernel names a process after the last
  // component of the path it was executed by, and the helper should show as `run-helper` or
  // `node` in ps, not as `5`.
  const links = posix.join(posix.dirname(shape.target), 'exe');
  const name = run ? 'run-helper' : 'node';
  try {
    mkdirSync(links, { recursive: true });
    symlinkSync(`/proc/self/fd/${HELPER_EXE_FD}`, posix.join(links, name));
  } catch (e) {
    throw new FailedPreconditionError(`cannot prepare ${links}: ${(e as Error).message}`, { cause: e });
  }
  const stdio: SpawnStdio[] = [opts.stdio[0], opts.stdio[1], 'pipe', 'pipe', opts.stdio[2] === 'inherit' ? 2 : 'pipe', ...exes];
  if (direct) return spawnProcess(posix.join(links, name), [`--namespaces=${process.pid}${opts.network !== 'host' ? ',net' : ''}`], { stdio, env: {} });
  args.push(posix.join(links, name));
  if (!run) args.push(helper);
  return spawnProcess('setpriv', args, {
    stdio,
    // The helper needs no environment; in particular no NODE_OPTIONS of the caller's.
    env: { PATH: `${userns !== undefined ? `${idMapTools()}:` : ''}${toolPath()}` },
  });
}

/** A run without a user namespace of its own: its chain is run-helper itself (spawnChain). */
function entersItsOwnNamespaces(shape: ChainShape): boolean {
  return shape.kind === 'run' && shape.userns === undefined;
}

function chainResult(shape: ChainShape, opts: ChainOptions, requestReady: Promise<Request | undefined>, move: CgroupMove): Promise<ChainResult> {
  if (opts.signal?.aborted) return Promise.reject(cancelled(opts.signal));
  let child: SpawnedProcess;
  try {
    child = spawnChain(shape, opts);
  } catch (e) {
    return Promise.reject(e);
  }
  const terminal = shape.terminal === true;
  const direct = entersItsOwnNamespaces(shape);
  // A run always looks for its container's first process: its cgroups are joined from here.
  const needContainerPid = shape.kind === 'run' || opts.beforeRequest !== undefined;
  return new Promise<ChainResult>((resolve, reject) => {
    const control = child.stdio[3] as Socket;
    let reply = '';
    let diagnostics = '';
    const diag = child.stdio[2] as Readable;
    diag.setEncoding('utf8');
    diag.on('data', (d: string) => {
      if (diagnostics.length < 65536) diagnostics += d;
    });
    let aborted = false;
    let spawnError: Error | undefined;
    let setupError: unknown;
    control.setEncoding('utf8');
    /** The helper's host pid (PID 1 of the new namespace), once found. */
    let containerPid: number | undefined;
    let pending = '';
    control.on('data', (d: string) => {
      reply += d;
      if (!terminal) return;
      pending += d;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const fd = parsePtyLine(line);
        if (fd !== undefined) takeTerminal(fd);
      }
    });
    // The helper's pty master, copied here with pidfd_getfd; the helper waits for our answer.
    const takeTerminal = (fd: number): void => {
      try {
        if (containerPid === undefined) throw new Error('the helper is gone');
        const master = takeDescriptor(containerPid, fd);
        opts.onTerminal?.(master);
        control.write(`${PTY_TAKEN_LINE}\n`);
      } catch (e) {
        setupError = new FailedPreconditionError(`cannot give the container a terminal: ${(e as Error).message}`, { cause: e });
        if (child.pid !== undefined) killChain(child.pid);
      }
    };
    control.on('error', () => {}); // EPIPE when the helper exited before reading: its exit says why

    const onAbort = (): void => {
      aborted = true;
      control.destroy();
      if (child.pid !== undefined) killChain(child.pid);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (e) => {
      spawnError = e;
    });
    let command = '';
    const sendRequest = async (pid: number): Promise<void> => {
      if (needContainerPid) {
        const gone = (): boolean => child.exitCode !== null || child.signalCode !== null || aborted;
        containerPid = await firstChild(pid, gone);
        if (containerPid === undefined) {
          move.helper(undefined);
          return; // the chain ended (or was aborted) first: its exit says why
        }
        // The helper moves into the run's cgroups while the network is attached and the request
        // prepared (with an init, the init it becomes and the command it starts are born there).
        move.helper(containerPid);
        try {
          await opts.beforeRequest?.(containerPid);
        } catch (e) {
          setupError = e;
          killChain(pid);
          return;
        }
      } else {
        move.helper(undefined);
      }
      try {
        await move.done();
      } catch (e) {
        setupError = e;
        killChain(pid);
        return;
      }
      const request = await requestReady;
      if (request === undefined) {
        control.end();
        return;
      }
      if (request.kind === 'run') {
        command = request.args[0] ?? '';
        let body: Buffer;
        try {
          body = encodeRunRequest(request);
        } catch (e) {
          setupError = e;
          killChain(pid);
          return;
        }
        control.write(frameRunRequest(body, pid));
      } else {
        control.write(`${JSON.stringify({ ...request, chainPid: pid })}\n`);
      }
    };
    const onSpawned = (): void => {
      void sendRequest(child.pid as number);
      opts.onSpawn?.({ stdin: child.stdin, stdout: child.stdout, stderr: child.stdio[4] as Readable | null });
    };
    child.on('spawn', onSpawned);
    child.on('close', (code: number | null, sig: NodeJS.Signals | null) => {
      opts.signal?.removeEventListener('abort', onAbort);
      control.destroy();
      const lines = reply.split('\n').filter((l) => l.length > 0 && parsePtyLine(l) === undefined);
      const execed = lines.includes(EXEC_LINE);
      const error = lines.find((l) => l !== EXEC_LINE);
      const lostSigkill = code === 1 && UNSHARE_LOST_SIGKILL.test(diagnostics);
      if (spawnError !== undefined) {
        reject(new FailedPreconditionError(`cannot start ${direct ? 'the runtime helper' : 'setpriv/unshare (util-linux)'}: ${spawnError.message}`, { cause: spawnError }));
      } else if (aborted) {
        reject(cancelled(opts.signal as AbortSignal));
      } else if (setupError !== undefined) {
        reject(setupError);
      } else if (error !== undefined) {
        reject(replyError(error));
      } else if (code !== 0 && !lostSigkill && /^(setpriv|unshare|run-helper): /m.test(diagnostics)) {
        reject(new FailedPreconditionError(`cannot create the container's namespaces: ${firstLine(diagnostics)}`));
      } else if (shape.kind === 'run' && !execed) {
        // Neither an answer nor an execve: the helper itself died (a crash, or a SIGKILL).
        const why = diagnostics.split('\n').find((l) => /Error|error:/.test(l)) ?? firstLine(diagnostics);
        reject(new FailedPreconditionError(`the runtime helper died before starting ${command} (exit ${code ?? sig}): ${why.trim()}`));
      } else if (lostSigkill) {
        // unshare passes a child's death by signal on by raising the same signal on itself, but
        // signal(SIGKILL, SIG_DFL) fails with EINVAL, so for SIGKILL it prints an error and exits
        // 1 instead (util-linux 2.38, sys-utils/unshare.c). Nothing else ends unshare that way.
        resolve({ exitCode: 128 + constants.signals.SIGKILL, signal: 'SIGKILL', diagnostics, execed });
      } else if (sig !== null) {
        resolve({ exitCode: 128 + (constants.signals[sig] ?? 0), signal: sig, diagnostics, execed });
      } else {
        resolve({ exitCode: code ?? 0, diagnostics, execed });
      }
    });
  });
}

const readOnlyExecutables = new Map<string, number>();

/**
 * Until the helper execve's the command, /proc/self/exe (and so `RUN ["/proc/self/exe"]` or a
 * `#!/proc/self/exe` script, resolved by the kernel in the helper's context) is the helper's
 * binary on the host (run-helper, or node for a copy): the container could execute it, and open
 * it for writing once nothing runs it any more (runc CVE-2019-5736). So the chain executes the
 * helper, and the init, from a read-only bind of that one file, attached nowhere
 * (readOnlyFileMount): writes through any such path fail with EROFS, and nothing of the host's
 * tree beyond the file is reachable from it. One per command, kept open for the next runs: two
 * syscalls, no copy (a sealed memfd copy of node would cost ~95 MB and tens of ms). The
 * descriptor is close-on-exec in tsbuild and passed to the chain only.
 */
function readOnlyExecutable(path: string): number {
  let fd = readOnlyExecutables.get(path);
  if (fd === undefined) {
    try {
      fd = readOnlyFileMount(path);
    } catch (e) {
      throw new FailedPreconditionError(`cannot make a read-only mount of ${path} for the container (open_tree and mount_setattr need Linux 5.12 and CAP_SYS_ADMIN): ${(e as Error).message}`, { cause: e });
    }
    readOnlyExecutables.set(path, fd);
  }
  return fd;
}

/**
 * Moves the helper (everything it forks follows) into the run's cgroups, from tsbuild's side and
 * while the request is prepared: the first move into a cgroup v1 hierarchy waits for an RCU grace
 * period (cgroup_threadgroup_rwsem taken for writing), 5 to 20 ms measured here, which the helper
 * would otherwise spend after it had started, on the command's path. The move starts as soon as
 * both the cgroups (`cgroups`, from Chain.joinCgroups) and the helper (`helper`) are known, in the
 * same turn: the writes go to libuv's pool at once and wait out the grace period there while this
 * thread goes on preparing the request. From here it also works where the helper could not do it
 * itself: in a user namespace it is root only inside, the cgroup.procs files belong to host root,
 * and a move needs write access to cgroup.procs of the common ancestor of both cgroups (cgroup v2
 * delegation rules). With an init the helper becomes it: the init and the command are inside too.
 */
class CgroupMove {
  #procsFiles: string[] | undefined;
  /** null: the chain ended before its helper was found. */
  #helper: number | null | undefined;
  #started = false;
  #moved!: (move: Promise<void>) => void;
  readonly #done = new Promise<void>((resolve) => (this.#moved = resolve));

  constructor() {
    // A failed move is reported by the chain that awaits done(); one that ends first never does.
    this.#done.catch(() => {});
  }

  /** The run's cgroup.procs files; an empty list: none. The first call counts. */
  cgroups(procsFiles: string[]): void {
    this.#procsFiles ??= procsFiles;
    this.#start();
  }

  /** The helper's host pid, or undefined when the chain has no helper to move (ended, or a copy). */
  helper(pid: number | undefined): void {
    this.#helper ??= pid ?? null;
    this.#start();
  }

  /** Resolves once the helper is in every cgroup, or there was nothing to move. */
  done(): Promise<void> {
    return this.#done;
  }

  #start(): void {
    if (this.#started || this.#procsFiles === undefined || this.#helper === undefined) return;
    this.#started = true;
    const helper = this.#helper;
    this.#moved(helper === null ? Promise.resolve() : moveIntoAll(this.#procsFiles, helper));
  }
}

/**
 * Writes `pid` to each cgroup.procs file, one after the other: the first write waits out the grace
 * period and the others then take ~0.1 ms each. In parallel they would hold as many of libuv's four
 * threads for the whole grace period, and every file operation of tsbuild's would wait behind them.
 */
async function moveIntoAll(procsFiles: string[], pid: number): Promise<void> {
  for (const procs of procsFiles) await moveInto(procs, pid);
}

/** Writes `pid` to one cgroup.procs file, on libuv's pool. */
function moveInto(procs: string, pid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (e: Error): void => reject(new FailedPreconditionError(`cannot move the container into its cgroup (${procs}): ${e.message}`, { cause: e }));
    let fd: number;
    try {
      fd = openSync(procs, 'w');
    } catch (e) {
      fail(e as Error);
      return;
    }
    write(fd, String(pid), (e) => {
      closeSync(fd);
      if (e !== null) fail(e);
      else resolve();
    });
  });
}

/**
 * The child of `pid` (unshare's fork) that is PID 1 of the new PID namespace, polled from
 * /proc/<pid>/task/<pid>/children (Linux 3.5+, CONFIG_PROC_CHILDREN); undefined when `gone()`
 * turns true first. With a user namespace unshare forks another child first, the one that runs
 * newuidmap/newgidmap and exits: the container's is told apart by its NSpid line (status in
 * proc(5)), which has one more level than ours.
 */
async function firstChild(pid: number, gone: () => boolean): Promise<number | undefined> {
  const levels = nsLevels('self') ?? 1;
  for (let i = 0; ; i++) {
    if (gone()) return undefined;
    let children: string[];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      return undefined; // the chain's process is gone
    }
    for (const c of children) if ((nsLevels(c) ?? 0) > levels) return Number(c);
    await new Promise((r) => (i < 50 ? setImmediate(r) : setTimeout(r, 2)));
  }
}

/** How many PID namespaces deep a process is (the numbers on its NSpid line), undefined once gone. */
function nsLevels(pid: string): number | undefined {
  try {
    const line = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return line?.trim().split(/\s+/).length;
  } catch {
    return undefined;
  }
}

const UNSHARE_LOST_SIGKILL = /^unshare: (sigprocmask unblock failed|child exit failed)/m;

/** SIGKILL to PID 1 of the container first (its death empties the namespace), then to unshare. */
function killChain(pid: number): void {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // already gone
  }
  for (const c of children) tryKill(c);
  tryKill(pid);
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // ESRCH: it exited on its own
  }
}

export function cancelled(signal: AbortSignal): CancelledError {
  const reason: unknown = signal.reason;
  return new CancelledError(`cancelled${reason instanceof Error ? `: ${reason.message}` : ''}`, { cause: reason });
}

function replyError(text: string): TsbuildError {
  let parsed: HelperReply;
  try {
    parsed = JSON.parse(text.split('\n')[0]) as HelperReply;
  } catch {
    return new FailedPreconditionError(`runtime helper answered garbage: ${text.slice(0, 200)}`);
  }
  const { code, message } = parsed.error;
  switch (code) {
    case 'NOT_FOUND':
      return new NotFoundError(message);
    case 'INVALID_ARGUMENT':
      return new InvalidArgumentError(message);
    case 'ALREADY_EXISTS':
      return new AlreadyExistsError(message);
    case 'FAILED_PRECONDITION':
      return new FailedPreconditionError(message);
    default:
      return new TsbuildError(message);
  }
}
