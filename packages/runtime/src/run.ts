import { close, createReadStream, mkdirSync, rmSync, write } from 'node:fs';
import { rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { inUserNamespace, randomHex, setWindowSize } from '@tsbuild/linux';
import { CancelledError, FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { type Resources, validateResources } from './cgroups/cgroup-resources.js';
import { DEFAULT_CGROUP_ROOT, type RunCgroup, cgroupLayout, createRunCgroup, delegatedCgroup, ownCgroupPath, removeStaleCgroups, startCgroupReaper } from './cgroups/run-cgroup.js';
import { runExternal } from './external-runtime.js';
import { type Chain, startChain, type StdioMode } from './helper-chain.js';
import { findInit } from './init.js';
import { MAX_ID, isValidId } from '@tsbuild/oci';
import type { Mount } from './mount-spec.js';
import { securityRequest, validateUserNamespace } from './security-spec.js';
import { type DeviceNode, processRequest, resolveDevice } from './process-spec.js';
import type { ExtraMount, RunRequest } from './helper-protocol.js';
import type { RunIO, RunResult, RunSpec } from './spec.js';
import { type PrivateNetwork, attachPrivateNetwork } from './network/private-network.js';
import { attachUserNetwork } from './network/user-network.js';
import { warnOnce } from './warn-once.js';

/**
 * What a run's start depends on: the command line of its helper chain (namespaces, init, user
 * namespace maps), its cgroup and its scratch directory. Known before the rest of the spec, it
 * lets a caller start the run (startRun) while it still prepares the rest: locks, records, layers.
 */
export type RunStart = Pick<RunSpec, 'scratchDir' | 'network' | 'userns' | 'init' | 'resources' | 'devices' | 'runtime'>;

/**
 * A run started ahead of its spec by startRun: its helper chain booting, its cgroup made and the
 * helper on its way into it. run() takes it when the spec's RunStart, io and signal are the ones
 * it was started with; otherwise run() lets it go and starts afresh, so a wrong guess costs time,
 * never behaviour.
 */
export interface StartedRun {
  /** The scratch directory the spec that takes this run must name (RunSpec.scratchDir). */
  readonly scratchDir: string;
  /**
   * Ends what no run() took: the chain (its helper exits), the cgroup and the scratch directory.
   * After run() took it, or a second time, nothing. Resolves once they are gone.
   */
  release(): Promise<void>;
}

/**
 * Starts a run whose full spec is not known yet (see StartedRun); pass it to run() with that spec.
 * Never throws: a start that cannot be made (bad values, an abort) gives a StartedRun that run()
 * does not take, and run() reports the problem as it would without one.
 */
export function startRun(start: RunStart, io: RunIO, signal?: AbortSignal): StartedRun {
  if (start.runtime === undefined && signal?.aborted !== true) {
    try {
      validateStart(start);
      return new Launch(start, io, signal);
    } catch {
      // reported by run(), which checks the same values
    }
  }
  return {
    scratchDir: start.scratchDir,
    release: () => rm(start.scratchDir, { recursive: true, force: true }),
  };
}

/** A run's network when its spec names none. */
function defaultNetwork(): 'host' | 'private' {
  // Rootless (in a user namespace) the default is a network of the run's own, as buildah's and
  // podman's rootless default is slirp4netns: the host's is not ours to share there.
  return inUserNamespace() ? 'private' : 'host';
}

/**
 * Runs `spec.args` in a container and resolves with its exit status once it and every process it
 * started are gone. Rejects with CancelledError when `signal` aborts (the container is killed
 * first), and with a typed error when the container could not be set up (mounts, cwd). `started`:
 * the run as startRun began it, taken if it was started with this spec's RunStart, io and signal.
 *
 * Call it from the main thread: the container's lifetime is tied to the thread that spawned it
 * (PR_SET_PDEATHSIG fires when that thread exits), so a worker thread's exit would kill it.
 */
export async function run(spec: RunSpec, io: RunIO, signal?: AbortSignal, started?: StartedRun): Promise<RunResult> {
  let launch: Launch | undefined;
  try {
    validate(spec);
    const proc = processRequest(spec);
    if (started instanceof Launch && started.fits(spec, io, signal)) launch = started;
    else await started?.release();
    if (spec.runtime !== undefined) return await runExternal(spec, io, signal);
    if (signal?.aborted) throw cancelledBeforeStart(signal);
    launch ??= new Launch(startOf(spec), io, signal);
    return await launch.finish(spec, proc);
  } finally {
    // A started run that was not taken ends here too: nothing of it outlives run().
    if (launch === undefined) await started?.release();
  }
}

/**
 * One run of the built-in runtime from its start (the constructor: the chain spawned, the cgroup
 * made and joined) to its end (finish: the request sent, the result, everything removed).
 */
class Launch implements StartedRun {
  readonly scratchDir: string;
  readonly #key: string;
  readonly #io: RunIO;
  readonly #signal: AbortSignal | undefined;
  readonly #target: string;
  readonly #network: 'host' | 'none' | 'private';
  /** The init's host path, with an init. */
  readonly #init: string | undefined;
  /** Where the run's cgroups go (cgroupRoot), undefined where none can. */
  readonly #cgroupRoot = cgroupRoot();
  readonly #chain: Chain;
  readonly #cgroup: Promise<RunCgroup | undefined>;
  readonly #tty: TerminalRelay | undefined;
  readonly #copies: Promise<void>[] = [];
  #net: PrivateNetwork | undefined;
  /** Set once finish or release has it: a launch is used once. */
  #used = false;

  constructor(start: RunStart, io: RunIO, signal: AbortSignal | undefined) {
    this.scratchDir = start.scratchDir;
    this.#key = canonical(start);
    this.#io = io;
    this.#signal = signal;
    this.#target = posix.join(start.scratchDir, 'rootfs');
    this.#network = start.network ?? defaultNetwork();
    // Whatever can fail before anything starts: the init, the devices, the scratch directory.
    const init = start.init === true ? findInit() : undefined;
    this.#init = init;
    const devices = (start.devices ?? []).map((d) => resolveDevice(d));
    mkdirSync(this.#target, { recursive: true });
    const tty = io.terminal !== undefined ? new TerminalRelay(io) : undefined;
    this.#tty = tty;
    const stdin: StdioMode = tty !== undefined || io.stdin === undefined || io.stdin === 'ignore' ? 'ignore' : io.stdin === 'inherit' ? 'inherit' : 'pipe';
    // The chain first: its helper is moved into the run's cgroup (an RCU grace period of 5–20 ms,
    // see CgroupMove) while the request is prepared here; the helper waits for the request.
    this.#chain = startChain(
      { kind: 'run', target: this.#target, ...(start.userns !== undefined ? { userns: start.userns } : {}), terminal: tty !== undefined },
      {
        network: this.#network,
        init,
        beforeRequest:
          this.#network === 'private'
            ? async (pid) => {
                this.#net = inUserNamespace() ? await attachUserNetwork(pid, start.userns !== undefined) : await attachPrivateNetwork(pid);
              }
            : undefined,
        stdio: tty !== undefined ? ['ignore', 'ignore', 'pipe'] : [stdin, io.stdout === 'inherit' ? 'inherit' : 'pipe', io.stderr === 'inherit' ? 'inherit' : 'pipe'],
        signal,
        ...(tty !== undefined ? { onTerminal: (master: number) => tty.start(master) } : {}),
        onSpawn: (s) => {
          if (s.stdin !== null && typeof io.stdin === 'object') {
            // A command that does not read its stdin closes the pipe: EPIPE is its right, not an error.
            this.#copies.push(pipeline(io.stdin, s.stdin).catch(() => {}));
          }
          if (s.stdout !== null && typeof io.stdout === 'object') s.stdout.pipe(io.stdout, { end: false });
          if (s.stderr !== null && typeof io.stderr === 'object') s.stderr.pipe(io.stderr, { end: false });
        },
      },
    );
    // The cgroup reaper before the cgroup: once the helper's move into it has begun, a fork (the
    // reaper's spawn) waits until that move has waited out its RCU grace period (fork takes
    // cgroup_threadgroup_rwsem for reading, the move for writing): 3.6 ms of main's time, profiled.
    if (this.#cgroupRoot !== undefined) startCgroupReaper();
    // Moved while the request is prepared, before it exists.
    this.#cgroup = runCgroup(withDevices(start.resources, devices), this.#cgroupRoot).then((cgroup) => {
      if (cgroup !== undefined) this.#chain.joinCgroups(cgroup.procsFiles);
      return cgroup;
    });
    // Reported by finish, or dropped by release.
    this.#cgroup.catch(() => {});
  }

  /** This launch was started for `spec`, `io` and `signal`, and is still unused. */
  fits(spec: RunSpec, io: RunIO, signal: AbortSignal | undefined): boolean {
    const a = this.#io;
    return (
      !this.#used &&
      signal === this.#signal &&
      canonical(startOf(spec)) === this.#key &&
      io.stdin === a.stdin &&
      io.stdout === a.stdout &&
      io.stderr === a.stderr &&
      (io.terminal === undefined) === (a.terminal === undefined) &&
      io.terminal?.sizeFrom === a.terminal?.sizeFrom
    );
  }

  async finish(spec: RunSpec, proc: ReturnType<typeof processRequest>): Promise<RunResult> {
    this.#used = true;
    const chain = this.#chain;
    let cgroup: RunCgroup | undefined;
    try {
      let request: Omit<RunRequest, 'chainPid'>;
      try {
        // Made again if it went: a run started before its caller took the store's lock may have
        // seen a prune empty the store's tmp/ meanwhile (the helper needs only this mountpoint now;
        // it was executed through the links beside it as the chain started).
        mkdirSync(this.#target, { recursive: true });
        cgroup = await this.#cgroup;
        request = {
          kind: 'run',
          target: this.#target,
          rootfs: spec.userns ? spec.rootfs.map(forUserNamespace) : spec.rootfs,
          ...(extraMounts(spec).length > 0 ? { mounts: extraMounts(spec) } : {}),
          args: spec.args,
          env: spec.env,
          cwd: spec.cwd,
          uid: spec.user?.uid ?? 0,
          gid: spec.user?.gid ?? 0,
          additionalGids: spec.user?.additionalGids ?? [],
          hostname: spec.hostname ?? randomHex(6),
          network: this.#network,
          security: securityRequest(spec),
          process: proc,
          ...(this.#tty !== undefined ? { terminal: true } : {}),
          ...(this.#init !== undefined ? { init: posix.basename(this.#init) } : {}),
        };
      } catch (e) {
        await chain.abandon();
        throw e;
      }
      const sent = chain.send(request);
      // Cgroups that runs killed before they could remove them are removed while this one runs:
      // after the request has gone out, off the command's path.
      const root = this.#cgroupRoot;
      const stale = root === undefined ? undefined : new Promise<void>((resolve) => setImmediate(resolve)).then(() => removeStaleCgroups(root)).catch(() => []);
      const result = await sent;
      await Promise.all([...this.#copies, stale]);
      await this.#tty?.finished();
      const oomKilled = cgroup?.oomKilled() ?? false;
      const usage = cgroup?.usage();
      return { exitCode: result.exitCode, ...(result.signal !== undefined ? { signal: result.signal } : {}), oomKilled, ...(usage !== undefined ? { usage } : {}) };
    } finally {
      await this.#end(cgroup);
    }
  }

  async release(): Promise<void> {
    if (this.#used) return;
    this.#used = true;
    await this.#chain.abandon();
    await this.#end(await this.#cgroup.catch(() => undefined));
  }

  /**
   * In this order: kill what the run left (cgroup.kill), so the network namespace empties and its
   * veth goes, then free the address and the scratch dir. The scratch dir holds a few entries (the
   * rootfs mountpoint, the exe links, /etc files): removed synchronously, in well under a
   * millisecond, rather than in a round trip through the libuv pool for each entry.
   */
  async #end(cgroup: RunCgroup | undefined): Promise<void> {
    this.#tty?.stop();
    await cleanup([() => cgroup?.destroy(), () => this.#net?.release(), () => rmSync(this.scratchDir, { recursive: true, force: true })]);
  }
}

/** The RunStart of a spec. */
function startOf(spec: RunSpec): RunStart {
  const { scratchDir, network, userns, init, resources, devices, runtime } = spec;
  return { scratchDir, network, userns, init, resources, devices, runtime };
}

/** JSON with object keys sorted and undefined left out: equal for equal values however they were spread together. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).filter(([, y]) => y !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/**
 * The run's cgroup. Without limits it is only a convenience (cgroup.kill), so a machine where
 * cgroups cannot be created (no cgroupfs, not root) still runs; with limits that is an error.
 */
async function runCgroup(resources: Resources | undefined, root: string | undefined): Promise<RunCgroup | undefined> {
  const limited = resources !== undefined && Object.values(resources).some((v) => v !== undefined);
  try {
    if (root === undefined) throw new FailedPreconditionError('no cgroup v2 subtree is delegated to this user');
    return await createRunCgroup(resources ?? {}, root, { confineDevices: !inUserNamespace() });
  } catch (e) {
    if (!limited) return undefined;
    // A limit that cannot be set rootless is said once, never silently dropped; the run goes on.
    if (inUserNamespace()) {
      warnOnce(`resource limits are not applied: no cgroup tsbuild may write here (rootless; delegate a cgroup v2 subtree to the user to get them): ${(e as Error).message}`);
      return undefined;
    }
    throw e;
  }
}

/**
 * Where a run's cgroups go. Rootless, the host's hierarchy is root's: runs go under a cgroup v2
 * subtree delegated to the user when there is one (delegatedCgroup), and nowhere otherwise.
 */
function cgroupRoot(): string | undefined {
  return inUserNamespace() ? rootlessCgroupRoot() : DEFAULT_CGROUP_ROOT;
}

/** The delegated cgroup v2 directory of a rootless run, if any (v1 has no delegation). */
function rootlessCgroupRoot(): string | undefined {
  if (cgroupLayout(DEFAULT_CGROUP_ROOT).version !== 2) return undefined;
  const self = ownCgroupPath();
  return self === undefined ? undefined : delegatedCgroup(DEFAULT_CGROUP_ROOT, self, process.getuid?.() ?? 0);
}

/** Runs every step even when one fails, then throws the first failure. */
async function cleanup(steps: (() => unknown)[]): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}

function cancelledBeforeStart(signal: AbortSignal): CancelledError {
  const reason: unknown = signal.reason;
  return new CancelledError(`cancelled${reason instanceof Error ? `: ${reason.message}` : ''}`, { cause: reason });
}

function validate(spec: RunSpec): void {
  if (spec.args.length === 0 || spec.args[0] === '') throw new InvalidArgumentError('run: empty command (args[0] is missing)');
  if (!spec.cwd.startsWith('/')) throw new InvalidArgumentError(`run: working directory must be absolute: ${spec.cwd}`);
  if (spec.rootfs.length === 0) throw new InvalidArgumentError('run: rootfs has no mounts');
  validateStart(startOf(spec));
  // HOST_NAME_MAX (limits.h); sethostname(2) fails with EINVAL beyond it.
  if (spec.hostname !== undefined && (spec.hostname.length === 0 || Buffer.byteLength(spec.hostname) > 64)) {
    throw new InvalidArgumentError(`run: hostname must be 1 to 64 bytes: ${spec.hostname}`);
  }
  const u = spec.user;
  if (u !== undefined) {
    for (const [what, id] of [['uid', u.uid], ['gid', u.gid], ...(u.additionalGids ?? []).map((g) => ['additional gid', g] as const)] as const) {
      if (!isValidId(id)) throw new InvalidArgumentError(`run: ${what} ${id} is not an id from 0 to ${MAX_ID}`);
    }
  }
  for (const e of spec.env) if (!e.includes('=')) throw new InvalidArgumentError(`run: environment entry is not KEY=VALUE: ${e}`);
  for (const m of spec.mounts ?? []) {
    if (!posix.isAbsolute(m.destination)) throw new InvalidArgumentError(`run: mount destination must be absolute: ${m.destination}`);
    if (m.type === 'bind' && (m.source === undefined || !posix.isAbsolute(m.source))) throw new InvalidArgumentError(`run: bind mount at ${m.destination} needs an absolute source`);
    if (m.type !== 'bind' && m.type !== 'tmpfs') throw new InvalidArgumentError(`run: mount at ${m.destination}: type must be bind or tmpfs: ${String(m.type)}`);
  }
  if (spec.mounts !== undefined && spec.mounts.length > 0 && spec.runtime !== undefined) throw new InvalidArgumentError('run: extra mounts are not supported with an external OCI runtime');
  if (spec.runtime !== undefined) {
    const unsupported = (['ulimits', 'oomScoreAdj', 'devices', 'shmSize', 'tmpfs', 'label', 'apparmorProfile'] as const).filter((k) => spec[k] !== undefined && !(Array.isArray(spec[k]) && spec[k].length === 0));
    if (unsupported.length > 0) throw new InvalidArgumentError(`run: ${unsupported.join(', ')} not supported with an external OCI runtime (only with the built-in one)`);
  }
  if (spec.runtime === '') throw new InvalidArgumentError('run: runtime is empty (want runc, crun or a path)');
}

/** The checks of what a run's start takes (startRun checks them too, so it never starts from bad values). */
function validateStart(start: RunStart): void {
  if (start.userns !== undefined) validateUserNamespace(start.userns);
  if (!posix.isAbsolute(start.scratchDir)) throw new InvalidArgumentError(`run: scratchDir must be absolute: ${start.scratchDir}`);
  if (start.network !== undefined && !['host', 'none', 'private'].includes(start.network)) throw new InvalidArgumentError(`run: network must be host, none or private: ${String(start.network)}`);
  if (start.resources !== undefined) validateResources(start.resources);
}

/**
 * The tsbuild side of `run -t`: the pty master (taken from the helper) relayed to and from the
 * caller's streams, its size kept to `sizeFrom`'s. The master is read with blocking reads on the
 * libuv pool, not as a non-blocking tty stream: the latter lost the last few KB in 19 runs of 30
 * (`seq 1 20000` into a pty) once the slave closed, a blocking read(2) drains the buffer before
 * it reports EIO. `finished` waits for that EIO, so no output is lost.
 */
class TerminalRelay {
  private fd = -1;
  private closed: Promise<void> = Promise.resolve();
  private rawSet = false;
  private readonly onResize = (): void => this.resize();
  private readonly onInput = (d: Buffer): void => this.send(d);
  // End of a piped stdin: the terminal's EOF character, as typing ^D would send.
  private readonly onInputEnd = (): void => this.send(Buffer.from([4]));
  private sending: Promise<unknown> = Promise.resolve();

  constructor(private readonly io: RunIO) {}

  start(fd: number): void {
    this.fd = fd;
    const m = createReadStream('', { fd, autoClose: false, highWaterMark: 1 << 16 });
    // EIO once every holder of the slave is gone: the end (autoClose is off, so no 'close').
    this.closed = new Promise((resolve) => {
      m.on('error', () => resolve());
      m.once('end', () => resolve());
    });
    const sizeFrom = this.io.terminal?.sizeFrom;
    if (sizeFrom?.isTTY) {
      this.resize();
      sizeFrom.on('resize', this.onResize);
    }
    const out = this.io.stdout === 'inherit' ? process.stdout : this.io.stdout;
    m.pipe(out, { end: false }); // the caller's stream may collect more than this run
    const input = this.io.stdin === 'inherit' ? process.stdin : this.io.stdin;
    if (input !== undefined && input !== 'ignore') {
      if (input === process.stdin && process.stdin.isTTY) {
        process.stdin.setRawMode(true);
        this.rawSet = true;
      }
      input.on('data', this.onInput);
      input.once('end', this.onInputEnd);
    }
  }

  /** Input goes to the master in order, one blocking write at a time (EIO once the run is over). */
  private send(d: Buffer): void {
    this.sending = this.sending.then(() => new Promise((resolve) => write(this.fd, d, resolve)));
  }

  private resize(): void {
    const s = this.io.terminal?.sizeFrom;
    if (this.fd >= 0 && s?.isTTY) setWindowSize(this.fd, s.rows, s.columns);
  }

  /** Resolves once the command's output is all relayed (at most 5 s after the run ended). */
  async finished(): Promise<void> {
    await Promise.race([this.closed, new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  stop(): void {
    this.io.terminal?.sizeFrom?.off('resize', this.onResize);
    const input = this.io.stdin === 'inherit' ? process.stdin : this.io.stdin;
    if (input !== undefined && input !== 'ignore') {
      input.off('data', this.onInput);
      input.off('end', this.onInputEnd);
      input.pause();
    }
    if (this.rawSet) process.stdin.setRawMode(false);
    // After the last read and write: both have returned (EIO) once the container is gone.
    const fd = this.fd;
    if (fd >= 0) void Promise.all([this.closed, this.sending]).then(() => close(fd, () => {}));
  }
}

/** RUN --mount's (and -v's) mounts, then --tmpfs ones. */
function extraMounts(spec: RunSpec): ExtraMount[] {
  return [...(spec.mounts ?? []), ...(spec.tmpfs ?? []).map((t) => ({ destination: t.destination, type: 'tmpfs' as const, options: t.options }))];
}

/** The run's --device nodes as device cgroup rules too (cgroups/ writes them). */
function withDevices(resources: Resources | undefined, devices: DeviceNode[]): Resources | undefined {
  if (devices.length === 0) return resources;
  return { ...resources, devices: [...(resources?.devices ?? []), ...devices.map((d) => ({ type: d.type, major: d.major, minor: d.minor, access: d.access }))] };
}

/**
 * Overlay in a user namespace refuses `redirect_dir=off` with EPERM (measured on 6.18): an
 * unprivileged mount never follows redirects anyway, so the option is dropped there.
 */
function forUserNamespace(m: Mount): Mount {
  return m.type === 'overlay' ? { ...m, options: m.options.filter((o) => !o.startsWith('redirect_dir=')) } : m;
}
