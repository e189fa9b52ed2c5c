import { randomBytes } from 'node:crypto';
import { close, createReadStream, rmSync, write } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { inUserNamespace, setWindowSize } from '@tsbuild/linux';
import { CancelledError, FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { type Resources, validateResources } from './cgroups/cgroup-resources.js';
import { DEFAULT_CGROUP_ROOT, type RunCgroup, cgroupLayout, createRunCgroup, delegatedCgroup, ownCgroupPath, removeStaleCgroups } from './cgroups/run-cgroup.js';
import { runExternal } from './external-runtime.js';
import { startChain, type StdioMode } from './helper-chain.js';
import { findInit } from './init.js';
import { MAX_ID, isValidId } from '@tsbuild/oci';
import type { Mount } from './mount-spec.js';
import { securityRequest, validateUserNamespace } from './security-spec.js';
import { type DeviceNode, processRequest } from './process-spec.js';
import type { ExtraMount, RunRequest } from './helper-protocol.js';
import type { RunIO, RunResult, RunSpec } from './spec.js';
import { type PrivateNetwork, attachPrivateNetwork } from './network/private-network.js';
import { attachUserNetwork } from './network/user-network.js';
import { warnOnce } from './warn-once.js';

/**
 * Runs `spec.args` in a container and resolves with its exit status once it and every process it
 * started are gone. Rejects with CancelledError when `signal` aborts (the container is killed
 * first), and with a typed error when the container could not be set up (mounts, cwd).
 *
 * Call it from the main thread: the container's lifetime is tied to the thread that spawned it
 * (PR_SET_PDEATHSIG fires when that thread exits), so a worker thread's exit would kill it.
 */
export async function run(spec: RunSpec, io: RunIO, signal?: AbortSignal): Promise<RunResult> {
  validate(spec);
  const proc = processRequest(spec);
  if (spec.runtime !== undefined) return runExternal(spec, io, signal);
  if (signal?.aborted) throw cancelledBeforeStart(signal);
  const target = posix.join(spec.scratchDir, 'rootfs');
  await mkdir(target, { recursive: true });
  // Rootless (in a user namespace) the default is a network of the run's own, as buildah's and
  // podman's rootless default is slirp4netns: the host's is not ours to share there.
  const network = spec.network ?? (inUserNamespace() ? 'private' : 'host');
  const init = spec.init === true ? findInit() : undefined;
  let cgroup: RunCgroup | undefined;
  let net: PrivateNetwork | undefined;
  const tty = io.terminal !== undefined ? new TerminalRelay(io) : undefined;
  try {
    const stdin: StdioMode = tty !== undefined || io.stdin === undefined || io.stdin === 'ignore' ? 'ignore' : io.stdin === 'inherit' ? 'inherit' : 'pipe';
    const copies: Promise<void>[] = [];
    // The chain first: node boots in the helper (most of a short run's time) while the cgroup is
    // made and joined and the seccomp program compiled here; the helper waits for the request.
    const chain = startChain(
      { kind: 'run', target, ...(spec.userns !== undefined ? { userns: spec.userns } : {}), terminal: tty !== undefined },
      {
        network,
        init,
        beforeRequest:
          network === 'private'
            ? async (pid) => {
                net = inUserNamespace() ? await attachUserNetwork(pid, spec.userns !== undefined) : await attachPrivateNetwork(pid);
              }
            : undefined,
        stdio: tty !== undefined ? ['ignore', 'ignore', 'pipe'] : [stdin, io.stdout === 'inherit' ? 'inherit' : 'pipe', io.stderr === 'inherit' ? 'inherit' : 'pipe'],
        signal,
        ...(tty !== undefined ? { onTerminal: (master: number) => tty.start(master) } : {}),
        onSpawn: (s) => {
          if (s.stdin !== null && typeof io.stdin === 'object') {
            // A command that does not read its stdin closes the pipe: EPIPE is its right, not an error.
            copies.push(pipeline(io.stdin, s.stdin).catch(() => {}));
          }
          if (s.stdout !== null && typeof io.stdout === 'object') s.stdout.pipe(io.stdout, { end: false });
          if (s.stderr !== null && typeof io.stderr === 'object') s.stderr.pipe(io.stderr, { end: false });
        },
      },
    );
    let request: Omit<RunRequest, 'chainPid'>;
    try {
      cgroup = await runCgroup(withDevices(spec.resources, proc.devices));
      // Moved while the helper starts, before the request exists.
      if (cgroup !== undefined) chain.joinCgroups(cgroup.procsFiles);
      request = {
        kind: 'run',
        target,
        rootfs: spec.userns ? spec.rootfs.map(forUserNamespace) : spec.rootfs,
        ...(extraMounts(spec).length > 0 ? { mounts: extraMounts(spec) } : {}),
        args: spec.args,
        env: spec.env,
        cwd: spec.cwd,
        uid: spec.user?.uid ?? 0,
        gid: spec.user?.gid ?? 0,
        additionalGids: spec.user?.additionalGids ?? [],
        hostname: spec.hostname ?? randomBytes(6).toString('hex'),
        network,
        security: securityRequest(spec),
        process: proc,
        ...(tty !== undefined ? { terminal: true } : {}),
      };
    } catch (e) {
      await chain.abandon();
      throw e;
    }
    const result = await chain.send(request);
    await Promise.all(copies);
    await tty?.finished();
    const oomKilled = cgroup?.oomKilled() ?? false;
    const usage = cgroup?.usage();
    return { exitCode: result.exitCode, ...(result.signal !== undefined ? { signal: result.signal } : {}), oomKilled, ...(usage !== undefined ? { usage } : {}) };
  } finally {
    tty?.stop();
    // In this order: kill what the run left (cgroup.kill), so the network namespace empties and
    // its veth goes, then free the address and the scratch dir.
    // The scratch dir holds a few entries (the rootfs mountpoint, the exe links, /etc files):
    // removed synchronously, in well under a millisecond, rather than in a round trip through
    // the libuv pool for each entry.
    await cleanup([() => cgroup?.destroy(), () => net?.release(), () => rmSync(spec.scratchDir, { recursive: true, force: true })]);
  }
}

/**
 * The run's cgroup. Without limits it is only a convenience (cgroup.kill), so a machine where
 * cgroups cannot be created (no cgroupfs, not root) still runs; with limits that is an error.
 */
async function runCgroup(resources: Resources | undefined): Promise<RunCgroup | undefined> {
  // Rootless, the host's hierarchy is root's: runs go under a cgroup v2 subtree delegated to the
  // user when there is one (delegatedCgroup), and nowhere otherwise.
  const root = inUserNamespace() ? rootlessCgroupRoot() : DEFAULT_CGROUP_ROOT;
  if (root !== undefined) await removeStaleCgroups(root).catch(() => []);
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
  if (spec.userns !== undefined) validateUserNamespace(spec.userns);
  if (!posix.isAbsolute(spec.scratchDir)) throw new InvalidArgumentError(`run: scratchDir must be absolute: ${spec.scratchDir}`);
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
  if (spec.network !== undefined && !['host', 'none', 'private'].includes(spec.network)) throw new InvalidArgumentError(`run: network must be host, none or private: ${String(spec.network)}`);
  if (spec.resources !== undefined) validateResources(spec.resources);
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
