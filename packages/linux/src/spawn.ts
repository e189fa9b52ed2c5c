import { EventEmitter } from 'node:events';
import { accessSync, closeSync, constants as fsConstants, openSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { posix } from 'node:path';
import type { Socket } from 'node:net';
import { net } from '@tsbuild/oci';
import { sys, syscallError } from './libc.js';

/**
 * A child's descriptor: 'pipe' (a socket pair, our end a net.Socket in `stdio`), 'inherit' (ours
 * of the same number), 'ignore' (/dev/null), or a descriptor of ours. As node's spawn() takes them.
 */
export type SpawnStdio = 'ignore' | 'inherit' | 'pipe' | number;

export interface SpawnOptions {
  /** The child's descriptors 0, 1, 2, …: each slot is set, none is left to chance. */
  stdio: SpawnStdio[];
  /** The whole environment; its PATH also finds a command named without a slash. */
  env: Record<string, string>;
  /** A session of its own (setsid), as node's `detached`. */
  detached?: boolean;
}

/**
 * The part of node's ChildProcess that tsbuild uses, for a process started by posix_spawn(3):
 * the same events ('spawn', 'error', 'exit', 'close', in node's order), `pid`, `stdio`,
 * `exitCode`, `signalCode`, `kill`, `ref` and `unref`.
 */
export class SpawnedProcess extends EventEmitter {
  pid: number | undefined;
  readonly stdio: (Socket | null)[];
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Holds the event loop open while the process runs, as node's process handle does (unref() lets go). */
  #keepAlive: NodeJS.Timeout | undefined;
  #openStreams = 0;

  constructor(stdio: (Socket | null)[]) {
    super();
    this.stdio = stdio;
  }

  get stdin(): Socket | null {
    return this.stdio[0] ?? null;
  }

  get stdout(): Socket | null {
    return this.stdio[1] ?? null;
  }

  get stderr(): Socket | null {
    return this.stdio[2] ?? null;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    // Once reaped, the pid may be another process's.
    if (this.pid === undefined || this.exitCode !== null || this.signalCode !== null) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  ref(): void {
    this.#keepAlive?.ref();
  }

  unref(): void {
    this.#keepAlive?.unref();
  }

  /** @internal */
  started(pid: number): void {
    this.pid = pid;
    this.#keepAlive = setInterval(() => {}, 2 ** 31 - 1);
    // node emits 'close' once the process has exited and every stream it reads from has closed.
    for (const s of this.stdio.slice(1)) {
      if (s === null) continue;
      this.#openStreams++;
      s.once('close', () => {
        this.#openStreams--;
        this.#maybeClose();
      });
    }
    process.nextTick(() => this.emit('spawn'));
  }

  /** @internal */
  failed(e: Error): void {
    for (const s of this.stdio) s?.destroy();
    process.nextTick(() => {
      this.emit('error', e);
      this.emit('close', null, null);
    });
  }

  /** @internal */
  exited(status: number): void {
    clearInterval(this.#keepAlive);
    const signal = status & 0x7f;
    if (signal === 0) this.exitCode = (status >> 8) & 0xff;
    else this.signalCode = SIGNAL_NAMES.get(signal) ?? null;
    this.emit('exit', this.exitCode, this.signalCode);
    this.#maybeClose();
  }

  #maybeClose(): void {
    if (this.#openStreams === 0 && (this.exitCode !== null || this.signalCode !== null)) this.emit('close', this.exitCode, this.signalCode);
  }
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([k, v]) => [v, k as NodeJS.Signals]));

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const WNOHANG = 1;
const ECHILD = 10;

/** Processes started here and not yet reaped, by pid; reaped on SIGCHLD (see reapExited). */
const running = new Map<number, SpawnedProcess>();

function reapExited(): void {
  for (const [pid, child] of running) {
    const [r, status] = sys().waitpid(pid, WNOHANG);
    if (r === 0) continue;
    if (r < 0 && -r !== ECHILD) continue;
    running.delete(pid);
    // ECHILD: reaped by someone else, its status lost; counted as a SIGKILL, the one way to lose a child.
    child.exited(r === pid ? status : constants.signals.SIGKILL);
  }
  if (running.size === 0) process.off('SIGCHLD', reapExited);
}

/**
 * Starts `command` with `args` as node's child_process.spawn() would, but by posix_spawn(3):
 * glibc's child shares the caller's address space until it executes (CLONE_VM | CLONE_VFORK),
 * so the start costs the same whatever node's heap; spawn() forks, ~5–10 ms per child here with
 * a heap of a few tens of MB, and loads node:child_process first (~4 ms). Returns once the child
 * has executed `command` (or reports the failure as node does, with an 'error' event). The child
 * gets the default disposition for every signal and an empty signal mask (node ignores SIGPIPE,
 * and ignored signals survive execve), and exactly the descriptors of `stdio`: ours are
 * close-on-exec. Exits are collected on SIGCHLD, by pid only: node's own children stay node's.
 */
export function spawnProcess(command: string, args: string[], opts: SpawnOptions): SpawnedProcess {
  const theirs: number[] = []; // the child's descriptors, in slot order
  const opened: number[] = []; // ours to close once the child has them
  const mine: (number | undefined)[] = []; // our ends of the 'pipe' slots, made into sockets once the child runs
  let devNull: number | undefined;
  let pid: number | undefined;
  let failure: Error | undefined;
  try {
    for (const [i, s] of opts.stdio.entries()) {
      if (s === 'pipe') {
        const [ours, other] = socketPair();
        mine[i] = ours;
        opened.push(other);
        theirs.push(other);
      } else if (s === 'ignore') {
        devNull ??= openSync('/dev/null', 'r+');
        theirs.push(devNull);
      } else {
        theirs.push(s === 'inherit' ? i : s);
      }
    }
    const file = findCommand(command, opts.env.PATH);
    const env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
    // Listening before the child exists: a SIGCHLD that came first would be lost.
    if (running.size === 0) process.on('SIGCHLD', reapExited);
    const r = sys().spawn(file, [command, ...args], env, theirs, opts.detached === true);
    if (r < 0) throw syscallError(`spawn ${command}`, undefined, -r);
    pid = r;
  } catch (e) {
    failure = e as Error;
  } finally {
    for (const fd of opened) closeSync(fd);
    if (devNull !== undefined) closeSync(devNull);
  }
  // Our ends become sockets (node:net loads here) only now: the child is already on its way.
  const child = new SpawnedProcess(opts.stdio.map((_, i) => (mine[i] === undefined ? null : socketOf(mine[i]!, i))));
  if (pid === undefined) {
    if (running.size === 0) process.off('SIGCHLD', reapExited);
    child.failed(failure ?? new Error(`spawn ${command}: failed`));
  } else {
    running.set(pid, child);
    child.started(pid);
  }
  return child;
}

function socketPair(): [number, number] {
  const sv = sys().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (typeof sv === 'number') throw syscallError('socketpair', undefined, -sv);
  return sv;
}

/** Our end of a 'pipe' slot: the child's stdin is written to, every other slot read (and written). */
function socketOf(fd: number, slot: number): Socket {
  return new (net().Socket)({ fd, readable: slot !== 0, writable: true });
}

/** findOnPath, or the error node's spawn gives for a command it cannot find. */
function findCommand(command: string, path?: string): string {
  if (command.includes('/')) return command;
  const file = findOnPath(command, path);
  if (file === undefined) throw Object.assign(new Error(`spawn ${command} ENOENT`), { code: 'ENOENT', errno: -2, syscall: `spawn ${command}`, path: command });
  return file;
}

/** Where the tools tsbuild starts are looked for when the caller's environment has no PATH. */
const FALLBACK_TOOL_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The PATH tsbuild looks up and starts its own tools with (setpriv, unshare, ip, slirp4netns, the
 * cgroup reaper's sh…): the caller's, or the usual system directories when it has none.
 */
export function toolPath(): string {
  return process.env.PATH ?? FALLBACK_TOOL_PATH;
}

/**
 * An executable `name` on `path` (default: the default PATH tsbuild gives the processes it
 * starts), as execvp(3) finds one: an empty entry is the working directory, an entry that cannot
 * be searched (EACCES, as root's own directories for another user; ENOTDIR) is passed over.
 * Looked up with stat, which says ENOENT without an exception (the first one node builds costs
 * ~4 ms here). Undefined when there is none.
 */
export function findOnPath(name: string, path = FALLBACK_TOOL_PATH): string | undefined {
  for (const dir of path.split(':')) {
    const candidate = posix.join(dir === '' ? '.' : dir, name);
    if (executable(candidate)) return candidate;
  }
  return undefined;
}

/** A regular file we may execute; false for anything stat or access(2) refuses. */
function executable(file: string): boolean {
  try {
    if (statSync(file, { throwIfNoEntry: false })?.isFile() !== true) return false;
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}
