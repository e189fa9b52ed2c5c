import { EventEmitter } from 'node:events';
import { accessSync, closeSync, constants as fsConstants, openSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { posix } from 'node:path';
import type { Socket } from 'node:net';
import { lazy, net } from '@tsbuild/oci';
import { koffi, libc } from './ffi.js';
import { check, sys, syscallError } from './libc.js';

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

const F_DUPFD_CLOEXEC = 1030;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const WNOHANG = 1;
const ECHILD = 10;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSID = 0x80;
// glibc's posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336, sigset_t 128: room to spare.
const FILE_ACTIONS_SIZE = 256;
const ATTR_SIZE = 1024;
const SIGSET_SIZE = 256;

const spawnLib = lazy(() => {
  const lib = libc();
  return {
    posixSpawn: lib.func('int posix_spawn(_Out_ int *pid, const char *path, const void *actions, const void *attr, const char **argv, const char **envp)'),
    actionsInit: lib.func('int posix_spawn_file_actions_init(void *actions)'),
    actionsAddDup2: lib.func('int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)'),
    actionsDestroy: lib.func('int posix_spawn_file_actions_destroy(void *actions)'),
    attrInit: lib.func('int posix_spawnattr_init(void *attr)'),
    attrSetFlags: lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
    attrSetSigMask: lib.func('int posix_spawnattr_setsigmask(void *attr, const void *set)'),
    attrSetSigDefault: lib.func('int posix_spawnattr_setsigdefault(void *attr, const void *set)'),
    attrDestroy: lib.func('int posix_spawnattr_destroy(void *attr)'),
    sigEmptySet: lib.func('int sigemptyset(void *set)'),
    sigFillSet: lib.func('int sigfillset(void *set)'),
    socketpair: lib.func('int socketpair(int domain, int type, int protocol, void *sv)'),
    waitpid: lib.func('int waitpid(int pid, void *status, int options)'),
  };
});

/** Processes started here and not yet reaped, by pid; reaped on SIGCHLD (see reapExited). */
const running = new Map<number, SpawnedProcess>();

function reapExited(): void {
  const status = Buffer.alloc(4);
  for (const [pid, child] of running) {
    const r = spawnLib().waitpid(pid, status, WNOHANG);
    if (r === 0) continue;
    if (r < 0 && koffi().errno() !== ECHILD) continue;
    running.delete(pid);
    // ECHILD: reaped by someone else, its status lost; counted as a SIGKILL, the one way to lose a child.
    child.exited(r === pid ? status.readInt32LE(0) : constants.signals.SIGKILL);
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
  const lib = spawnLib();
  const theirs: number[] = []; // the child's descriptors, in slot order
  const opened: number[] = []; // ours to close once the child has them
  const mine: (number | undefined)[] = []; // our ends of the 'pipe' slots, made into sockets once the child runs
  let devNull: number | undefined;
  const actions = Buffer.alloc(FILE_ACTIONS_SIZE);
  const attr = Buffer.alloc(ATTR_SIZE);
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
    // Each descriptor goes through a copy numbered above every slot, so that setting one slot never
    // overwrites the source of another (dup2 clears close-on-exec on the slot).
    lib.actionsInit(actions);
    for (const [slot, fd] of theirs.entries()) {
      const copy = check(sys().fcntl(fd, F_DUPFD_CLOEXEC, 'int', theirs.length), 'fcntl', `F_DUPFD_CLOEXEC ${fd}`);
      opened.push(copy);
      lib.actionsAddDup2(actions, copy, slot);
    }
    lib.attrInit(attr);
    const all = Buffer.alloc(SIGSET_SIZE);
    const none = Buffer.alloc(SIGSET_SIZE);
    lib.sigFillSet(all);
    // And glibc's own two (SIGCANCEL 32, SIGSETXID 33), which sigfillset leaves out: posix_spawn's
    // child would set them to SIG_IGN, which execve keeps (node's spawn leaves none ignored).
    all[3]! |= 0x80;
    all[4]! |= 0x01;
    lib.sigEmptySet(none);
    lib.attrSetSigDefault(attr, all);
    lib.attrSetSigMask(attr, none);
    lib.attrSetFlags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (opts.detached === true ? POSIX_SPAWN_SETSID : 0));
    const env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
    // Listening before the child exists: a SIGCHLD that came first would be lost.
    if (running.size === 0) process.on('SIGCHLD', reapExited);
    const out = [0];
    const err = lib.posixSpawn(out, file, actions, attr, [command, ...args, null], [...env, null]);
    if (err !== 0) throw syscallError(`spawn ${command}`, undefined, err);
    pid = out[0]!;
  } catch (e) {
    failure = e as Error;
  } finally {
    lib.actionsDestroy(actions);
    lib.attrDestroy(attr);
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
  const sv = Buffer.alloc(8);
  check(spawnLib().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 'socketpair');
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
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
