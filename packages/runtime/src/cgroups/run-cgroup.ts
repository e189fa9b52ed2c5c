import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { attachDeviceFilter, processAlive, randomHex, spawnProcess, toolPath } from '@tsbuild/linux';
import { FailedPreconditionError } from '@tsbuild/oci';
import { type DeviceRule, type Resources, cgroupParentPath, deviceRules, v1Writes, v2Controllers, v2Writes } from './cgroup-resources.js';
import { deviceFilterInstructions, encodeInstructions } from './device-filter.js';
import { warnOnce } from '../warn-once.js';
import type { RunUsage } from '../spec.js';

/**
 * The cgroup(s) of one run, named `tsbuild-<creator pid>-<random>` under a `tsbuild` parent:
 *
 *  - cgroup v2 (a pure unified hierarchy, /sys/fs/cgroup/cgroup.controllers exists): one cgroup
 *    /sys/fs/cgroup/tsbuild/tsbuild-…, with the controllers the limits need enabled in the
 *    subtree_control of the root and of `tsbuild` (the "no internal processes" rule is why the
 *    parent sits at the root, as docker's cgroupfs driver does, and not under tsbuild's own cgroup);
 *  - cgroup v1 (and hybrid): one cgroup in each controller hierarchy a limit needs
 *    (/sys/fs/cgroup/memory/tsbuild/tsbuild-…, …/cpu/…, …/cpuset/…, …/pids/…), plus, when a
 *    unified hierarchy is mounted at /sys/fs/cgroup/unified, one there. That one carries no
 *    controller but gives what v1 lacks: cgroup.kill (kill everything in one write, even what
 *    escaped into a new session) and cgroup.events `populated` (know when it is empty).
 *
 * Lifecycle: `createRunCgroup` makes the directories and writes the limits; the helper writes "0"
 * to every path in `procsFiles` before it mounts anything, so the command and all it forks are
 * inside; after the run `oomKilled()` reads the memory controller's OOM-kill counter, and
 * `destroy()` kills whatever is left, waits until the cgroups are empty and removes them (and the
 * `tsbuild` parents once no other run uses them).
 *
 * If tsbuild itself dies (kill -9), nothing of it runs to remove them; the kernel removes no
 * cgroup directory on its own (v1's release_agent is one global program per hierarchy, and a
 * known escape route: CVE-2022-0492). So the first cgroup a tsbuild process makes starts a reaper
 * (`cgroupReaper`): a small `sh` in a session of its own, outside every run's cgroup, that reads
 * the directories of each run on a pipe from tsbuild. When the pipe ends (tsbuild exited, however
 * it died) it kills what is left in them and removes them, then exits: after a normal exit they
 * are gone already and it ends at once; after kill -9 it lives the few ms the kernel takes to
 * empty the container. `removeStaleCgroups` (called before every run) is the second line, for a
 * reaper killed with tsbuild (a whole systemd unit stopped): it removes every tsbuild-<pid>-*
 * cgroup whose creator pid is no longer alive. A reused pid only postpones that removal until
 * the new owner of the pid is gone.
 *
 * A pid means something only in its own PID namespace: a tsbuild in a container that sees the
 * host's cgroupfs would take every run of the host's tsbuild for stale (their pids are not
 * alive in its namespace) and "kill what is left" in them, i.e. the processes of those runs
 * visible to it: its own container, itself included. So a name carries its creator's PID
 * namespace (the inode of /proc/self/ns/pid, 8 hex digits, then 8 random ones), and only the
 * cgroups of our own namespace are judged.
 */
export interface RunCgroup {
  name: string;
  /** The run's cgroup path inside each hierarchy (`/tsbuild/<name>`, or under --cgroup-parent). */
  path: string;
  /** Every cgroup directory of this run. */
  dirs: string[];
  /** `<dir>/cgroup.procs` of each: tsbuild moves the helper into them all (helper-chain.ts). */
  procsFiles: string[];
  /** The memory controller saw an OOM kill in this cgroup (v1 memory.oom_control, v2 memory.events). */
  oomKilled(): boolean;
  /**
   * The memory limit was reached at least once (v1 memory.failcnt, v2 memory.events `max`): a
   * weaker sign than `oomKilled`, for when the OOM-kill counter lived in a cgroup already removed.
   */
  memoryLimitHit(): boolean;
  /**
   * What the run has cost so far, from the accounting controllers' counters (read it after the
   * run, before `destroy`): each figure the host's cgroups give, none when they give none.
   */
  usage(): RunUsage;
  /** SIGKILLs everything still inside, waits for the cgroups to be empty, removes them. */
  destroy(): Promise<void>;
}

/**
 * The controllers every run's cgroup gets for its accounting (RunUsage), limits or not: v1
 * hierarchies a controller co-mounted with another (cpu,cpuacct) share, hence the realpath.
 * Their cost is one mkdir and one rmdir per hierarchy and run.
 */
const V1_ACCOUNTING = ['cpuacct', 'memory', 'blkio'] as const;
const V2_ACCOUNTING = ['memory', 'io'];

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
const PARENT = 'tsbuild';
const NAME = /^tsbuild-(\d+)-([0-9a-f]{8})[0-9a-f]{8}$/;

/** Our PID namespace's inode, as 8 hex digits (namespace inodes are 32-bit, proc_alloc_inum). */
export function pidNamespaceTag(): string {
  const inode = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  return (Number(inode) >>> 0).toString(16).padStart(8, '0');
}

export type CgroupLayout = { version: 2; root: string } | { version: 1; root: string; unified?: string };

export function cgroupLayout(root = DEFAULT_CGROUP_ROOT): CgroupLayout {
  if (existsSync(posix.join(root, 'cgroup.controllers'))) return { version: 2, root };
  const unified = posix.join(root, 'unified');
  return existsSync(posix.join(unified, 'cgroup.procs')) ? { version: 1, root, unified } : { version: 1, root };
}

/**
 * Rootless on cgroup v2: the cgroup delegated to us, under which our runs' cgroups go (cgroups(7),
 * "Cgroups v2 delegation"), or undefined. A delegate (systemd's `Delegate=yes`, as user@UID.service
 * is) owns its directory and its cgroup.procs; a process may move another between two cgroups
 * only with write access to cgroup.procs of their common ancestor, so the runs are made under the
 * highest cgroup above ours (`self`, the path of /proc/self/cgroup's `0::` line) that `uid` owns,
 * where our own cgroup and the run's have that ancestor in common. The host's root-owned
 * directories show as the overflow id in our user namespace and are never chosen.
 */
export function delegatedCgroup(root: string, self: string, uid: number): string | undefined {
  let found: string | undefined;
  const parts = self.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  for (let i = parts.length; i >= 1; i--) {
    const dir = posix.join(root, ...parts.slice(0, i));
    try {
      if (statSync(dir).uid !== uid || statSync(posix.join(dir, 'cgroup.procs')).uid !== uid) break;
    } catch {
      break;
    }
    found = dir;
  }
  return found;
}

/** This process's cgroup v2 path (the `0::` line of /proc/self/cgroup), or undefined on v1 only. */
export function ownCgroupPath(): string | undefined {
  try {
    return /^0::(\/.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

export interface RunCgroupOptions {
  /**
   * Confine the run to DEFAULT_DEVICE_RULES plus `resources.devices`: v1 devices.deny/allow, v2 an
   * eBPF program. The built-in runtime asks for it (as root: rootless, the host's device nodes'
   * own permissions apply and bpf(2) is not ours); an OCI runtime applies the bundle's rules.
   */
  confineDevices?: boolean;
  /** Attaches the v2 device program (tests replace the bpf(2) call; see device-filter.ts). */
  attachDevices?: (dir: string, rules: DeviceRule[]) => void;
}

function attachDevicesByBpf(dir: string, rules: DeviceRule[]): void {
  try {
    attachDeviceFilter(dir, encodeInstructions(deviceFilterInstructions(rules)));
  } catch (e) {
    throw new FailedPreconditionError(`cannot attach the devices eBPF program to cgroup ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

export async function createRunCgroup(resources: Resources, root = DEFAULT_CGROUP_ROOT, o: RunCgroupOptions = {}): Promise<RunCgroup> {
  const layout = cgroupLayout(root);
  const name = `tsbuild-${process.pid}-${pidNamespaceTag()}${randomHex(4)}`;
  const parent = resources.cgroupParent === undefined ? [PARENT] : cgroupParentPath(resources.cgroupParent);
  const dirs: string[] = [];
  /** Parent directories this run made (a --cgroup-parent that did not exist), removed when empty. */
  const made: string[] = [];
  let memoryDir: string | undefined;
  let memoryEvents: string | undefined;
  /** Where each accounting file of this run is. */
  const acct: { cpuacct?: string; memory?: string; blkio?: string; v2?: string } = {};
  try {
    if (layout.version === 2) {
      const dir = makeV2(root, parent, name, resources, made);
      dirs.push(dir);
      acct.v2 = dir;
      if (resources.memory !== undefined) memoryEvents = posix.join(dir, 'memory.events');
      const hasSwap = existsSync(posix.join(dir, 'memory.swap.max')) || !existsSync(posix.join(dir, 'cgroup.procs'));
      writeAll(dir, v2Writes(resources, hasSwap, existsSync(posix.join(dir, 'io.bfq.weight'))));
      if (resources.memorySwappiness !== undefined) warnOnce(`--memory-swappiness is ignored: cgroup v2 has no per-cgroup swappiness (only memory.swap.max)`);
      if (o.confineDevices === true) (o.attachDevices ?? attachDevicesByBpf)(dir, deviceRules(resources));
    } else {
      const hasMemsw = existsSync(posix.join(root, 'memory', 'memory.memsw.limit_in_bytes'));
      const blkio = posix.join(root, 'blkio');
      const bfq = existsSync(posix.join(blkio, 'blkio.bfq.weight'));
      if ((resources.blkioWeight !== undefined || (resources.blkioWeightDevice?.length ?? 0) > 0) && !bfq && existsSync(blkio) && !existsSync(posix.join(blkio, 'blkio.weight'))) {
        // CFQ (blkio.weight) left the kernel in 5.0; BFQ's files appear once the bfq module is loaded.
        throw new FailedPreconditionError(`block I/O weight is not supported here: ${blkio} has neither blkio.bfq.weight nor blkio.weight (load the bfq I/O scheduler)`);
      }
      const confine = o.confineDevices === true && existsSync(posix.join(root, 'devices'));
      const seen = new Set<string | undefined>();
      for (const [controller, writes] of v1Writes(resources, hasMemsw, { bfq, ...(confine ? { devices: deviceRules(resources) } : {}) })) {
        const hierarchy = posix.join(root, controller);
        if (!existsSync(hierarchy)) throw new FailedPreconditionError(`cgroup v1 controller ${controller} is not mounted at ${hierarchy}`);
        const dir = makeChild(hierarchy, parent, name, controller === 'cpuset', [], made);
        dirs.push(dir);
        seen.add(realDir(hierarchy));
        if (controller === 'memory') memoryDir = dir;
        writeAll(dir, writes);
      }
      // The accounting hierarchies the limits did not need: counted only, so one that is not
      // mounted is a figure less, not an error.
      for (const controller of V1_ACCOUNTING) {
        const hierarchy = posix.join(root, controller);
        const real = realDir(hierarchy);
        if (real === undefined || !existsSync(posix.join(hierarchy, 'cgroup.procs'))) continue;
        const dir = posix.join(hierarchy, ...parent, name);
        if (!seen.has(real)) {
          seen.add(real);
          dirs.push(makeChild(hierarchy, parent, name, false, [], made));
        }
        acct[controller] = dir;
      }
      if (layout.unified !== undefined) dirs.push(makeChild(layout.unified, parent, name, false, [], made));
    }
  } catch (e) {
    await removeDirs(dirs);
    await removeDirs(made.reverse(), false);
    throw e;
  }
  const everywhere = (): string[] => [...new Set([...dirs, ...hierarchies(layout).map((h) => posix.join(h, ...parent, name))])];
  // Every hierarchy's <name>, not only ours: an OCI runtime nests its cgroup in each (see destroy).
  // Told to the reaper in the next turn, once the caller has started moving the run's first
  // process in (helper-chain.ts CgroupMove): that move waits out an RCU grace period, which is
  // better begun ~1–4 ms sooner (the listing and the pipe write, traced).
  if (dirs.length > 0) setImmediate(() => reapOnExit(everywhere()));
  return {
    name,
    path: `/${[...parent, name].join('/')}`,
    dirs,
    procsFiles: dirs.map((d) => posix.join(d, 'cgroup.procs')),
    oomKilled: () => {
      if (memoryEvents !== undefined) return counter(memoryEvents, 'oom_kill') > 0;
      if (memoryDir !== undefined) {
        const f = posix.join(memoryDir, 'memory.oom_control');
        return counter(f, 'oom_kill') > 0 || counter(f, 'under_oom') > 0;
      }
      return false;
    },
    usage: () => (acct.v2 !== undefined ? v2Usage(acct.v2) : v1Usage(acct)),
    memoryLimitHit: () => {
      if (memoryEvents !== undefined) return counter(memoryEvents, 'max') > 0;
      if (memoryDir === undefined) return false;
      try {
        return Number(readFileSync(posix.join(memoryDir, 'memory.failcnt'), 'utf8')) > 0;
      } catch {
        return false;
      }
    },
    destroy: async () => {
      // An external runtime nests its own cgroup (…/<name>/ctr) in every hierarchy, some of which
      // we did not create: remove <name> wherever it exists, children first.
      const trees = everywhere().filter((d) => existsSync(d));
      const all = trees.flatMap(subtree);
      await killAndWait(all);
      await removeDirs(all);
      await removeDirs([...made].reverse(), false);
    },
  };
}

/**
 * Run by the reaper once its stdin ends (read with the shell's own `read`: no second process
 * starts beside the run's helper): every directory it was given, with whatever was made
 * inside it (an OCI runtime's own cgroup), deepest first; what still runs there is SIGKILLed
 * (cgroup.kill where the kernel has it), a busy directory retried for up to 5 s, then the
 * `tsbuild` parent removed if empty. Names are tsbuild-<pid>-<hex> under /sys/fs/cgroup: no
 * blanks, one a line.
 */
const REAPER_SCRIPT = `
dirs=
while IFS= read -r d; do dirs="$dirs$d
"; done
IFS='
'
i=0
while [ $i -lt 500 ]; do
  left=
  for d in $dirs; do
    [ -d "$d" ] || continue
    for sub in $(find "$d" -depth -type d 2>/dev/null); do
      [ -e "$sub/cgroup.kill" ] && echo 1 >"$sub/cgroup.kill" 2>/dev/null
      for p in $(cat "$sub/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      rmdir "$sub" 2>/dev/null
    done
    if [ -d "$d" ]; then left=1; else case "\${d%/*}" in */tsbuild) rmdir "\${d%/*}" 2>/dev/null;; esac; fi
  done
  [ -z "$left" ] && exit 0
  sleep 0.01
  i=$((i+1))
done
exit 1
`;

/** This process's reaper (its stdin), under a global symbol: one per process, whichever copy of this module starts it. */
const REAPER = Symbol.for('tsbuild.cgroup-reaper');

/**
 * Starts this process's reaper if it has none; reapOnExit does it on first use. A start returns
 * once the child has executed: node's spawn() took 2 to 13 ms (traced) in the middle of a run's
 * preparation, spawnProcess ~1 ms.
 */
export function startCgroupReaper(): Writable {
  const g = globalThis as Record<symbol, Writable | undefined>;
  const known = g[REAPER];
  if (known !== undefined && !known.destroyed) return known;
  const child = spawnProcess('sh', ['-c', REAPER_SCRIPT], {
    // setsid: a ^C or a kill of tsbuild's process group does not reach it; no stdout/stderr of
    // ours held open after we exit.
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    env: { PATH: toolPath() },
  });
  child.on('error', () => {}); // no sh: the sweep before the next run is what is left
  child.unref();
  const stdin = child.stdin as Socket;
  stdin.on('error', () => {});
  // The pipe must not keep tsbuild's event loop alive: its end, when tsbuild exits, is the signal.
  stdin.unref();
  g[REAPER] = stdin;
  return stdin;
}

/** Hands the directories of a new run cgroup to this process's reaper, started on first use. */
function reapOnExit(dirs: string[]): void {
  if (dirs.length === 0) return;
  // A pipe write of a few hundred bytes goes out at once (libuv tries it synchronously).
  startCgroupReaper().write(`${dirs.join('\n')}\n`);
}

/**
 * Kills what is left in, and removes, every tsbuild cgroup whose creator (the pid in its name) is
 * dead: the leftovers of a tsbuild that was killed mid-run. Returns the directories removed.
 */
export async function removeStaleCgroups(root = DEFAULT_CGROUP_ROOT): Promise<string[]> {
  const parents = hierarchies(cgroupLayout(root)).map((h) => posix.join(h, PARENT));
  const stale: string[] = [];
  const ours = pidNamespaceTag();
  for (const parent of parents) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue;
    }
    for (const n of names) {
      const m = NAME.exec(n);
      if (m !== null && m[2] === ours && !processAlive(Number(m[1]))) stale.push(...subtree(posix.join(parent, n)));
    }
  }
  if (stale.length > 0) {
    await killAndWait(stale);
    await removeDirs(stale);
  }
  return stale;
}

/** Every hierarchy mounted under the root: the root itself on v2, each v1 controller (and unified). */
function hierarchies(layout: CgroupLayout): string[] {
  if (layout.version === 2) return [layout.root];
  const out: string[] = [];
  try {
    for (const e of readdirSync(layout.root, { withFileTypes: true })) if (e.isDirectory()) out.push(posix.join(layout.root, e.name));
  } catch {
    // no cgroupfs at all
  }
  return out;
}

/** A cgroup directory and its descendants, deepest first (the order rmdir needs). */
function subtree(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) out.push(...subtree(posix.join(dir, e.name)));
  } catch {
    return out;
  }
  out.push(dir);
  return out;
}

function makeV2(root: string, parentPath: string[], name: string, resources: Resources, made: string[]): string {
  const limits = v2Controllers(resources);
  const available = readWords(posix.join(root, 'cgroup.controllers'));
  const missing = limits.filter((c) => !available.includes(c));
  if (missing.length > 0) throw new FailedPreconditionError(`cgroup v2 controller(s) ${missing.join(', ')} not available in ${root}/cgroup.controllers`);
  // cpu.stat's usage_usec is there without the cpu controller; memory.peak and io.stat need theirs.
  const wanted = [...new Set([...limits, ...V2_ACCOUNTING.filter((c) => available.includes(c))])].sort();
  return makeChild(root, parentPath, name, false, wanted, made);
}

function realDir(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

/** A file holding one number (cpuacct.usage, memory.max_usage_in_bytes, memory.peak), or undefined. */
function numberIn(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The `Write` lines of a v1 blkio io_service_bytes file (`MAJ:MIN Write N`), summed over devices. */
export function v1WrittenBytes(text: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length === 3 && f[1] === 'Write') total += Number(f[2]) || 0;
  }
  return total;
}

/** The `wbytes=` of every device line of a v2 io.stat (`MAJ:MIN rbytes=… wbytes=… …`), summed. */
export function v2WrittenBytes(text: string): number {
  let total = 0;
  for (const m of text.matchAll(/\bwbytes=(\d+)/g)) total += Number(m[1]);
  return total;
}

function v1Usage(acct: { cpuacct?: string; memory?: string; blkio?: string }): RunUsage {
  const out: RunUsage = {};
  const ns = acct.cpuacct !== undefined ? numberIn(posix.join(acct.cpuacct, 'cpuacct.usage')) : undefined;
  if (ns !== undefined) out.cpuMs = ns / 1e6;
  const peak = acct.memory !== undefined ? numberIn(posix.join(acct.memory, 'memory.max_usage_in_bytes')) : undefined;
  if (peak !== undefined) out.peakMemoryBytes = peak;
  if (acct.blkio !== undefined) {
    // CFQ/BFQ's io_service_bytes count only what their scheduler saw; the throttle layer's sees every bio.
    for (const f of ['blkio.throttle.io_service_bytes_recursive', 'blkio.throttle.io_service_bytes']) {
      try {
        out.writtenBytes = v1WrittenBytes(readFileSync(posix.join(acct.blkio, f), 'utf8'));
        break;
      } catch {
        // an older kernel without the _recursive file
      }
    }
  }
  return out;
}

function v2Usage(dir: string): RunUsage {
  const out: RunUsage = {};
  const usec = counterOrUndefined(posix.join(dir, 'cpu.stat'), 'usage_usec');
  if (usec !== undefined) out.cpuMs = usec / 1000;
  const peak = numberIn(posix.join(dir, 'memory.peak'));
  if (peak !== undefined) out.peakMemoryBytes = peak;
  try {
    out.writtenBytes = v2WrittenBytes(readFileSync(posix.join(dir, 'io.stat'), 'utf8'));
  } catch {
    // no io controller here
  }
  return out;
}

function counterOrUndefined(file: string, key: string): number | undefined {
  try {
    const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${key} `));
    return line === undefined ? undefined : Number(line.slice(key.length + 1));
  } catch {
    return undefined;
  }
}

/**
 * mkdir `<hierarchy>/<parent…>/<name>` (parent `tsbuild` or the --cgroup-parent's components).
 * The parent may be removed by another run finishing at the same moment (it removes `tsbuild`
 * once empty), hence the retry. Parents it had to create are added to `made`.
 */
function makeChild(hierarchy: string, parentPath: string[], name: string, cpuset: boolean, enable: string[], made: string[]): string {
  const parent = posix.join(hierarchy, ...parentPath);
  const dir = posix.join(parent, name);
  for (let attempt = 0; ; attempt++) {
    try {
      // Level by level: a v1 cpuset and a v2 subtree_control must be set up in each new level.
      let level = hierarchy;
      for (const component of parentPath) {
        const next = posix.join(level, component);
        if (!existsSync(next)) {
          try {
            mkdirSync(next);
            if (parentPath.length > 1 || component !== PARENT) made.push(next);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          }
        }
        // v1 cpuset: a new cgroup starts with empty cpus and mems (cgroup.clone_children is 0) and
        // takes no task until both are set: inherit them from the level above.
        if (cpuset) inheritCpuset(level, next);
        if (enable.length > 0) enableControllers(level, enable);
        level = next;
      }
      if (enable.length > 0) enableControllers(parent, enable);
      mkdirSync(dir);
      if (cpuset) inheritCpuset(parent, dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 3) continue;
      if (e instanceof FailedPreconditionError) throw e;
      throw new FailedPreconditionError(`cannot create cgroup ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  }
}

function inheritCpuset(from: string, to: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const target = posix.join(to, f);
    if (existsSync(target) && readFileSync(target, 'utf8').trim() !== '') continue;
    writeFileSync(target, readFileSync(posix.join(from, f), 'utf8').trim());
  }
}

function enableControllers(dir: string, controllers: string[]): void {
  const file = posix.join(dir, 'cgroup.subtree_control');
  const enabled = existsSync(file) ? readWords(file) : [];
  const missing = controllers.filter((c) => !enabled.includes(c));
  if (missing.length === 0) return;
  try {
    writeFileSync(file, missing.map((c) => `+${c}`).join(' '));
  } catch (e) {
    throw new FailedPreconditionError(`cannot enable cgroup v2 controller(s) ${missing.join(', ')} in ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

function writeAll(dir: string, writes: [string, string][]): void {
  for (const [file, value] of writes) {
    const path = posix.join(dir, file);
    try {
      writeFileSync(path, value);
    } catch (e) {
      throw new FailedPreconditionError(`cannot set cgroup limit ${path} to ${value}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  }
}

async function killAndWait(dirs: string[]): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    let busy = false;
    for (const dir of dirs) {
      const pids = procsOf(dir);
      if (pids.length === 0 && !populated(dir)) continue;
      busy = true;
      // cgroup.kill (Linux 5.14) SIGKILLs every process of the subtree at once, including ones
      // forked while we would be walking cgroup.procs; v1 has only the walk.
      const kill = posix.join(dir, 'cgroup.kill');
      if (existsSync(kill)) {
        try {
          writeFileSync(kill, '1');
          continue;
        } catch {
          // fall back to the walk
        }
      }
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
    if (!busy) return;
    if (Date.now() > deadline) throw new FailedPreconditionError(`processes remain in cgroup ${dirs.join(', ')} after SIGKILL`);
    await sleep(5);
  }
}

/**
 * rmdir each (children first), waiting out a v1 memory cgroup's brief EBUSY; then, with
 * `parents`, the `tsbuild` parent of each once no other run is in it. A --cgroup-parent's
 * directories are not ours to remove unless this run made them (`made`, with parents false).
 */
async function removeDirs(dirs: string[], parents = true): Promise<void> {
  for (const dir of dirs) {
    const deadline = Date.now() + 2000;
    for (;;) {
      try {
        rmdirSync(dir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (!parents && (code === 'EBUSY' || code === 'ENOTEMPTY')) break; // another run's parent too
        // v1 memory cgroups may stay busy for a moment after their last task exited.
        if (code === 'EBUSY' && Date.now() < deadline) {
          await sleep(5);
          continue;
        }
        throw new FailedPreconditionError(`cannot remove cgroup ${dir}: ${code ?? (e as Error).message}`, { cause: e });
      }
    }
    if (!parents || posix.basename(posix.dirname(dir)) !== PARENT) continue;
    try {
      rmdirSync(posix.dirname(dir));
    } catch {
      // another run's cgroup is still in it (EBUSY/ENOTEMPTY), or it is gone
    }
  }
}

function procsOf(dir: string): number[] {
  try {
    return readFileSync(posix.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function populated(dir: string): boolean {
  const f = posix.join(dir, 'cgroup.events');
  return existsSync(f) && counter(f, 'populated') > 0;
}

/** A `key value` line of a flat-keyed cgroup file (memory.events, memory.oom_control, cgroup.events). */
function counter(file: string, key: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  return line === undefined ? 0 : Number(line.slice(key.length + 1));
}

function readWords(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}


function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
