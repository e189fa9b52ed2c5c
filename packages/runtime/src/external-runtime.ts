import { accessSync, closeSync, constants as fsConstants, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { posix } from 'node:path';
import { constants, release } from 'node:os';
import { promisify } from 'node:util';
import { FailedPreconditionError, childProcess, tty } from '@tsbuild/oci';
import { capGet, lastCapability, randomHex, shortenOverlayData, spawnProcess, toolPath } from '@tsbuild/linux';
import { resolveCapabilities } from './capabilities.js';
import { DEFAULT_SECCOMP_PROFILE } from './seccomp/default-profile.js';
import { resolveProfile } from './seccomp/profile.js';
import { type RunCgroup, createRunCgroup, removeStaleCgroups } from './cgroups/run-cgroup.js';
import { mountCall, type Mount } from './mount-spec.js';
import { createNamedNetns, attachPrivateNetwork, type PrivateNetwork } from './network/private-network.js';
import { type BundleOptions, ociSpec } from './oci-bundle.js';
import { cancelled } from './helper-chain.js';
import { findInit } from './init.js';
import type { RunIO, RunResult, RunSpec } from './spec.js';

/**
 * `runtime: 'runc' | 'crun' | PATH`: the RUN through an OCI runtime instead of the built-in one.
 *
 *   scratchDir/bundle/config.json   process, root, hostname, mounts, namespaces, masked and
 *                                   read-only paths, cgroupsPath (oci-bundle.ts)
 *   scratchDir/bundle/etc-*         /etc/hosts, /etc/hostname, /etc/resolv.conf bound read-only
 *   scratchDir/rootfs               where the rootfs Mounts are mounted
 *   scratchDir/state                the runtime's --root (its state), removed afterwards
 *
 * The rootfs is mounted inside a private mount namespace, the one of
 *   setpriv --pdeathsig KILL -- unshare --mount --propagation private -- sh -c SCRIPT
 * where SCRIPT mounts it with mount(8) and runs `RUNTIME --root STATE run --bundle BUNDLE ID`, so
 * the mount vanishes with that namespace whatever happens. The runtime creates its cgroup as
 * `tsbuild/<run cgroup>/ctr`, nested in the run's cgroup that carries the limits, which is where
 * the OOM counter is read afterwards. Then `RUNTIME delete --force` and the cgroup's removal make
 * sure nothing is left. If tsbuild is killed -9 the runtime dies too (parent-death signals), but
 * the container's own processes may survive it: the next run's `removeStaleCgroups` kills them
 * through their cgroup (named after the dead tsbuild's pid) and removes it.
 */
export async function runExternal(spec: RunSpec, io: RunIO, signal?: AbortSignal): Promise<RunResult> {
  if (signal?.aborted) throw cancelled(signal);
  const runtime = resolveRuntime(spec.runtime as string);
  if (io.terminal !== undefined && !hasTerminal(io)) {
    throw new FailedPreconditionError(`run: a terminal (-t) through ${posix.basename(runtime)} needs one of tsbuild's own: the runtime relays the container's pty through its stdin or the controlling terminal, and there is neither (the built-in runtime needs none)`);
  }
  const rootfs = posix.join(spec.scratchDir, 'rootfs');
  const bundle = posix.join(spec.scratchDir, 'bundle');
  const state = posix.join(spec.scratchDir, 'state');
  await Promise.all([rootfs, bundle, state].map((d) => mkdir(d, { recursive: true })));
  const hostname = spec.hostname ?? randomHex(6);
  const network = spec.network ?? 'host';
  let cgroup: RunCgroup | undefined;
  let netns: { path: string; remove(): Promise<void> } | undefined;
  let net: PrivateNetwork | undefined;
  let newEtc: string[] = [];
  let id = `tsbuild-${process.pid}-${randomHex(4)}`;
  try {
    await removeStaleCgroups().catch(() => []);
    cgroup = await createRunCgroup(spec.resources ?? {});
    id = cgroup.name;
    if (network === 'private') {
      netns = await createNamedNetns(id);
      net = await attachPrivateNetwork(id);
    }
    const etc = await writeEtcFiles(bundle, hostname, net?.address, network === 'private');
    const config = ociSpec({
      rootfs,
      args: spec.args,
      env: spec.env,
      cwd: spec.cwd,
      user: { uid: spec.user?.uid ?? 0, gid: spec.user?.gid ?? 0, additionalGids: spec.user?.additionalGids ?? [] },
      hostname,
      network: network === 'host' ? 'host' : network === 'none' ? 'none' : { path: (netns as { path: string }).path },
      cgroupsPath: `${cgroup.path}/ctr`,
      etcFiles: etc,
      ...bundleSecurity(spec),
      ...(io.terminal !== undefined ? { terminal: terminalOf(io.terminal) } : {}),
      ...(spec.init === true ? { init: findInit() } : {}),
    });
    await writeFile(posix.join(bundle, 'config.json'), JSON.stringify(config));
    newEtc = upperDirs(spec.rootfs).filter((u) => !existsSync(posix.join(u, 'etc')));
    const script = runScript(spec.rootfs, rootfs, runtime, state, bundle, id, Object.keys(etc));
    const result = await runScriptInNamespace(script, io, signal);
    // The kernel counts an OOM kill in the victim's own memory cgroup (the runtime's …/ctr, which
    // it removes as the container ends; on v2 the count also reaches ours). Ours, holding the limit,
    // still shows that the limit was hit: together with a SIGKILL that is the OOM killer's work.
    const oomKilled = cgroup.oomKilled() || (result.exitCode === 128 + 9 && cgroup.memoryLimitHit());
    return { ...result, oomKilled };
  } finally {
    await promisify(childProcess().execFile)(runtime, ['--root', state, 'delete', '--force', id]).catch(() => {});
    // The runtime's /etc mountpoints copied /etc up into the upperdir; the script removed them,
    // and an /etc left empty there was not the command's doing: drop it (the overlay is gone by now).
    for (const u of newEtc) await rmdir(posix.join(u, 'etc')).catch(() => {});
    for (const step of [() => cgroup?.destroy(), () => net?.release(), () => netns?.remove(), () => rm(spec.scratchDir, { recursive: true, force: true })]) {
      await Promise.resolve(step()).catch(() => {});
    }
  }
}

/** The upperdirs of the overlay mounts of a rootfs. */
function upperDirs(mounts: Mount[]): string[] {
  return mounts.filter((m) => m.type === 'overlay').flatMap((m) => m.options.filter((o) => o.startsWith('upperdir=')).map((o) => o.slice('upperdir='.length)));
}

/** A runtime named without a '/' is looked up on PATH and the usual sbin/bin directories. */
export function resolveRuntime(name: string): string {
  const candidates = name.includes('/')
    ? [name]
    : [...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((d) => posix.join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, fsConstants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new FailedPreconditionError(`OCI runtime not found or not executable: ${name}`);
}

/** The files bound over /etc/hosts, /etc/hostname and /etc/resolv.conf, written into the bundle. */
async function writeEtcFiles(bundle: string, hostname: string, address: string | undefined, privateNet: boolean): Promise<Record<string, string>> {
  const files: Record<string, string> = {
    hosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${address ?? '127.0.1.1'}\t${hostname}\n`,
    hostname: `${hostname}\n`,
    'resolv.conf': resolvConf(privateNet),
  };
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    const path = posix.join(bundle, `etc-${name}`);
    await writeFile(path, text, { mode: 0o644 });
    out[name] = path;
  }
  return out;
}

/**
 * The host's resolv.conf; in a private network namespace a loopback nameserver (systemd-resolved's
 * 127.0.0.53) is unreachable, so it is dropped, and docker's fallback used when none is left.
 */
function resolvConf(privateNet: boolean): string {
  let text = '';
  try {
    text = readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    // none on the host
  }
  if (!privateNet) return text;
  const lines = text.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1)/.test(l));
  if (!lines.some((l) => /^\s*nameserver\s/.test(l))) lines.push('nameserver 8.8.8.8', 'nameserver 8.8.4.4');
  return `${lines.join('\n').trim()}\n`;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The shell script run in the private mount namespace. Mountpoint files the runtime would create
 * for /etc bind mounts are removed afterwards when the image had none, so they never reach the
 * layer. Diagnostics of the script itself go to fd 3; status 125 means it failed before the runtime.
 */
function runScript(mounts: Mount[], target: string, runtime: string, state: string, bundle: string, id: string, etc: string[]): string {
  const lines = ['set -u'];
  for (const m of mounts) {
    const { data } = mountCall(m);
    const short = m.type === 'overlay' ? shortenOverlayData(data) : undefined;
    const opts = short?.data ?? m.options.join(',');
    const typeArg = m.type === 'bind' ? '' : `-t ${q(m.type)} `;
    const bindOpt = m.type === 'bind' && !m.options.some((o) => o === 'bind' || o === 'rbind') ? 'bind,' : '';
    const mount = `mount ${typeArg}${opts.length > 0 || bindOpt !== '' ? `-o ${q(bindOpt + opts)} ` : ''}${q(m.source)} ${q(target)}`;
    lines.push(`${short !== undefined ? `cd ${q(short.cwd)} && ` : ''}${mount} 2>&3 || { echo "tsbuild: cannot mount the rootfs (${m.type} ${m.source}) at ${target}" >&3; exit 125; }`, 'cd /');
  }
  lines.push('missing=""');
  for (const f of etc) lines.push(`[ -e ${q(`${target}/etc/${f}`)} ] || [ -L ${q(`${target}/etc/${f}`)} ] || missing="$missing ${f}"`);
  // The runtime gets its own parent-death signal: sh's death (itself tied to tsbuild) kills it.
  lines.push(`setpriv --pdeathsig KILL -- ${q(runtime)} --root ${q(state)} run --bundle ${q(bundle)} ${q(id)} 3>&-`, 'status=$?');
  lines.push(`for f in $missing; do rm -f ${q(`${target}/etc/`)}"$f"; done`, 'exit $status');
  return lines.join('\n');
}

async function runScriptInNamespace(script: string, io: RunIO, signal: AbortSignal | undefined): Promise<Omit<RunResult, 'oomKilled'>> {
  const stdin = io.stdin === undefined || io.stdin === 'ignore' ? 'ignore' : io.stdin === 'inherit' ? 'inherit' : 'pipe';
  const child = spawnProcess('setpriv', ['--pdeathsig', 'KILL', '--', 'unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script], {
    stdio: [stdin, io.stdout === 'inherit' ? 'inherit' : 'pipe', io.stderr === 'inherit' ? 'inherit' : 'pipe', 'pipe'],
    env: { PATH: toolPath() },
  });
  const copies: Promise<void>[] = [];
  if (child.stdin !== null && typeof io.stdin === 'object') copies.push(pipeline(io.stdin, child.stdin).catch(() => {}));
  if (child.stdout !== null && typeof io.stdout === 'object') child.stdout.pipe(io.stdout, { end: false });
  if (child.stderr !== null && typeof io.stderr === 'object') child.stderr.pipe(io.stderr, { end: false });
  let diagnostics = '';
  (child.stdio[3] as Readable).setEncoding('utf8').on('data', (d: string) => (diagnostics += d));
  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
    killTree(child.pid);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.on('error', (e: Error) => reject(new FailedPreconditionError(`cannot start setpriv/unshare (util-linux): ${e.message}`, { cause: e })));
    child.on('close', (c: number | null, s: NodeJS.Signals | null) => resolve([c, s]));
  }).finally(() => signal?.removeEventListener('abort', onAbort));
  await Promise.all(copies);
  if (aborted) throw cancelled(signal as AbortSignal);
  if (code === 125 && diagnostics !== '') throw new FailedPreconditionError(diagnostics.trim().split('\n').reverse().join(': '));
  if (sig !== null) return { exitCode: 128 + (constants.signals[sig] ?? 0), signal: sig };
  return { exitCode: code ?? 0 };
}

/** Whether the runtime will find a terminal to relay a pty through: its stdin (tsbuild's, with -i) or /dev/tty. */
function hasTerminal(io: RunIO): boolean {
  if (io.stdin === 'inherit' && tty().isatty(0)) return true;
  try {
    closeSync(openSync('/dev/tty', 'r'));
    return true;
  } catch {
    return false;
  }
}

/**
 * process.terminal for `run -t`. The runtime in the foreground (`runc run` without -d) makes the
 * pty and relays it to and from its own stdio, as runc's "new terminal" mode does: tsbuild's
 * stdin when -i passes it on (a terminal there is put in raw mode and followed on resize by the
 * runtime itself), the pipes to io.stdout otherwise. The size comes from `sizeFrom` at the start.
 */
function terminalOf(t: NonNullable<RunIO['terminal']>): NonNullable<BundleOptions['terminal']> {
  const s = t.sizeFrom;
  return s?.isTTY && s.rows > 0 && s.columns > 0 ? { size: { rows: s.rows, columns: s.columns } } : {};
}

/** SIGKILL to the script's children (the runtime) and then to the script. */
function killTree(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) process.kill(Number(c), 'SIGKILL');
  } catch {
    // gone
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}


/** The run's capabilities, no_new_privs and seccomp profile for the bundle, as the built-in runtime applies them. */
function bundleSecurity(spec: RunSpec): Pick<BundleOptions, 'capabilities' | 'noNewPrivileges' | 'seccomp'> {
  const capabilities = resolveCapabilities(spec.capabilities, lastCapability(), capGet().permitted);
  const seccomp = spec.seccomp ?? 'default';
  return {
    capabilities,
    noNewPrivileges: spec.noNewPrivileges ?? false,
    ...(seccomp === 'unconfined'
      ? {}
      : { seccomp: resolveProfile(seccomp === 'default' ? DEFAULT_SECCOMP_PROFILE : seccomp, { capabilities: new Set(capabilities), arch: process.arch, kernel: release() }) }),
  };
}
