import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Descriptor, Digest, ImageConfig } from '@tsbuild/oci';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, isoTime } from '@tsbuild/oci';
import type { Store } from '@tsbuild/store';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';
import type { ExtraMount, RunResult } from '@tsbuild/runtime';
import { ImageState, type RunDefaults, type RunMount, WorkingContainer, cacheMountDirName, imageSnapshot } from '@tsbuild/container';
import { BuildCache } from './cache.js';
import type { BuildRecord, BuildRecords } from './build-records.js';

/**
 * Label on the committed snapshot of a failed RUN kept for `tsbuild debug` (issue 19): its value
 * is the id of the build record that describes it. Prune keeps such a snapshot only while that
 * record still has its kept state (as it keeps a container's snapshot while the container exists).
 */
export const KEPT_LABEL = 'tsbuild.debug.build';

/** A RUN --mount as `tsbuild debug` gives it again: the build's host side, or a secret to be given again. */
export type KeptMount =
  | { kind: 'mount'; mount: ExtraMount }
  | { kind: 'secret'; id: string; target: string; uid: number; gid: number; mode: number }
  /** A mount whose source lived in the build's scratch (a stage's files, a read-write copy): gone. */
  | { kind: 'gone'; target: string; what: string };

/** What `record.dir/debug/state.json` holds: a failed RUN's state. */
export interface KeptState {
  version: 1;
  build: string;
  step: number;
  /** The instruction, as the build printed it. */
  text: string;
  /** ISO time of the failure. */
  failedAt: string;
  /** The committed snapshot with everything the command wrote (labelled KEPT_LABEL). */
  snapshot: string;
  argv: string[];
  env: string[];
  workdir: string;
  user: string;
  network?: 'none' | 'host' | 'private';
  mounts: KeptMount[];
  /** The image config so far: its platform (for emulation) and layers. */
  config: ImageConfig;
}

/** One step of a build as `--from-step` finds its result: the cache key, or (a FROM) the base image's state. */
export interface StepEntry {
  step: number;
  stage: number;
  text: string;
  /** Set once the step is done (built or cached). */
  key?: Digest;
  /** A FROM step: the state it starts from (not in the build cache). */
  state?: { config: ImageConfig; layers: Descriptor[] };
}

const stateFile = (rec: BuildRecord) => path.join(rec.dir, 'debug', 'state.json');
const stepsFile = (rec: BuildRecord) => path.join(rec.dir, 'debug', 'steps.json');

/** The snapshot name a record's kept state is committed under. */
export const keptSnapshotName = (buildId: string) => `debug-${buildId}`;

/** Mounts of a failed RUN as debug gives them again: cache and tmpfs as they were, context binds by path; secrets never kept. */
export function keptMounts(mounts: RunMount[], storeRoot: string, contextDir: string): KeptMount[] {
  return mounts.map((m): KeptMount => {
    switch (m.type) {
      case 'tmpfs':
        return { kind: 'mount', mount: { destination: m.target, type: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', ...(m.size !== undefined ? [`size=${m.size}`] : [])] } };
      case 'cache':
        return { kind: 'mount', mount: { destination: m.target, type: 'bind', source: path.join(storeRoot, 'cache-mounts', cacheMountDirName(m.id)), options: m.readonly ? ['ro'] : [] } };
      case 'bind':
        if (m.from !== undefined || m.readwrite) return { kind: 'gone', target: m.target, what: `bind${m.from !== undefined ? ` from=${m.from}` : ''}${m.readwrite ? ',rw' : ''} source=${m.source}` };
        return { kind: 'mount', mount: { destination: m.target, type: 'bind', source: contextDir, sourcePath: m.source, options: ['ro'] } };
      case 'secret':
        return { kind: 'secret', id: m.id, target: m.target, uid: m.uid, gid: m.gid, mode: m.mode };
    }
  });
}

/**
 * Keeps a failed RUN's state in `rec`: its active snapshot committed under the record's name
 * (labelled for prune), and what the step ran with. Returns what the failure message adds.
 * Only the first failure of a build is kept (stages build in parallel; one is enough to enter).
 */
export async function keepFailedRun(
  rec: BuildRecord,
  wc: Pick<WorkingContainer, 'keep'>,
  run: { argv: string[]; env: Map<string, string>; user: string; workdir: string; network?: 'none' | 'host' | 'private'; mounts: RunMount[]; step: number; text: string; config: ImageConfig; storeRoot: string; contextDir: string },
): Promise<string> {
  const snapshot = keptSnapshotName(rec.id);
  const state: KeptState = {
    version: 1,
    build: rec.id,
    step: run.step,
    text: run.text,
    failedAt: isoTime(),
    snapshot,
    argv: run.argv,
    env: [...run.env].map(([k, v]) => `${k}=${v}`),
    workdir: run.workdir,
    user: run.user,
    ...(run.network !== undefined ? { network: run.network } : {}),
    mounts: keptMounts(run.mounts, run.storeRoot, run.contextDir),
    config: structuredClone(run.config),
  };
  // The state file first (exclusively): a second failing stage keeps nothing.
  if (!(await writeKeptState(rec, state))) return '';
  try {
    if (!(await wc.keep(snapshot, { [KEPT_LABEL]: rec.id }))) throw new FailedPreconditionError('the step has no snapshot');
  } catch {
    // Not kept (the failure stays the build's error): no record of a state that is not there.
    await fsp.rm(stateFile(rec), { force: true });
    return '';
  }
  return ' (tsbuild debug last to enter the failed step)';
}

/** Writes a record's kept state; false when the record already has one (another stage failed first). */
export async function writeKeptState(rec: BuildRecord, state: KeptState): Promise<boolean> {
  await fsp.mkdir(path.join(rec.dir, 'debug'), { recursive: true });
  try {
    await fsp.writeFile(stateFile(rec), JSON.stringify(state), { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

export async function writeSteps(rec: BuildRecord, steps: StepEntry[]): Promise<void> {
  await fsp.mkdir(path.join(rec.dir, 'debug'), { recursive: true });
  await fsp.writeFile(stepsFile(rec), JSON.stringify(steps));
}

export async function readKeptState(rec: BuildRecord): Promise<KeptState | undefined> {
  const text = await fsp.readFile(stateFile(rec), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as KeptState);
}

async function readSteps(rec: BuildRecord): Promise<StepEntry[]> {
  const text = await fsp.readFile(stepsFile(rec), 'utf8').catch(() => undefined);
  return text === undefined ? [] : (JSON.parse(text) as StepEntry[]);
}

/** Every record with a kept state, oldest first. */
export async function listKeptStates(records: BuildRecords): Promise<KeptState[]> {
  const out: KeptState[] = [];
  for (const r of await records.list()) {
    const s = await readKeptState(r);
    if (s) out.push(s);
  }
  return out;
}

/**
 * Removes a record's kept state: its snapshot, then its debug directory (the snapshot first: a
 * crash in between leaves a record that names a missing snapshot, never an unnamed snapshot,
 * and prune takes an unnamed one anyway). A record left with nothing else goes too.
 */
export async function removeKeptState(records: BuildRecords, s: OverlaySnapshotter, rec: BuildRecord): Promise<boolean> {
  const state = await readKeptState(rec);
  if (state && (await s.exists(state.snapshot))) await s.remove(state.snapshot);
  await fsp.rm(path.join(rec.dir, 'debug'), { recursive: true, force: true });
  const rest = await fsp.readdir(rec.dir).catch(() => [] as string[]);
  if (rest.length === 0) await records.remove(rec.id);
  return state !== undefined;
}

export interface EnterOptions {
  store: Store;
  snapshotter: OverlaySnapshotter;
  record: BuildRecord;
  /** The state before this step (its predecessor's result) instead of the failed step's. */
  fromStep?: number;
  /** The command (default: /bin/sh). */
  command?: string[];
  /** Secrets given again: id → file. */
  secrets?: Record<string, string>;
  stdin: 'inherit' | 'ignore';
  terminal?: { sizeFrom?: NodeJS.WriteStream };
  runtime?: RunDefaults;
  signal?: AbortSignal;
  /** Where a note on a mount that cannot be given again goes. */
  warn?: (message: string) => void;
}

/**
 * Runs a command (a shell by default) in a record's kept state, or in the state before step
 * `fromStep`, in a new active snapshot on top of it: what the session changes is removed after,
 * so the next `debug` finds the state as the build left it.
 */
export async function enterKeptState(opts: EnterOptions): Promise<RunResult> {
  const { store, snapshotter: s, record } = opts;
  return store.withLock('shared', async () => {
    const target = opts.fromStep !== undefined ? await stepState(opts, opts.fromStep) : await failedState(opts);
    const scratch = path.join(store.root, 'tmp', `debug-${record.id}-${process.pid}`);
    const key = `debug-session-${record.id}-${process.pid}-${Date.now()}`;
    const wc = WorkingContainer.forBuild({ store, snapshotter: s }, new ImageState(target.config, []), { keyPrefix: key, scratch });
    await s.prepare(key, target.snapshot);
    wc.useSnapshot(key);
    try {
      const env = new Map<string, string>();
      for (const kv of target.env) {
        const eq = kv.indexOf('=');
        if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
      }
      return await wc.runStep(opts.command && opts.command.length > 0 ? opts.command : ['/bin/sh'], env, target.user, {
        workdir: target.workdir,
        runtime: { ...opts.runtime, ...(target.network !== undefined ? { network: target.network } : {}) },
        ...(target.mounts.length > 0 ? { mounts: target.mounts } : {}),
        stdin: opts.stdin,
        stdout: process.stdout,
        stderr: process.stderr,
        ...(opts.terminal ? { terminal: opts.terminal } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } finally {
      await wc.discard();
      await fsp.rm(scratch, { recursive: true, force: true });
    }
  });
}

interface Target {
  snapshot: string | undefined;
  config: ImageConfig;
  env: string[];
  workdir: string;
  user: string;
  network?: 'none' | 'host' | 'private';
  mounts: ExtraMount[];
}

async function failedState(opts: EnterOptions): Promise<Target> {
  const { record } = opts;
  const state = await readKeptState(record);
  if (!state) throw new NotFoundError(`build ${record.id}: no failed step was kept (only a failed RUN of a build with a record is; see tsbuild debug --list)`);
  if (!(await opts.snapshotter.exists(state.snapshot))) throw new FailedPreconditionError(`build ${record.id}: the kept snapshot ${state.snapshot} is missing (pruned?)`);
  const mounts: ExtraMount[] = [];
  for (const m of state.mounts) {
    if (m.kind === 'mount') mounts.push(m.mount);
    else if (m.kind === 'gone') opts.warn?.(`RUN --mount=${m.what} at ${m.target}: its source was the build's own copy, not kept; not mounted`);
    else {
      const src = opts.secrets?.[m.id];
      if (src === undefined) {
        opts.warn?.(`secret ${m.id} at ${m.target} is not kept: give it again with --secret id=${m.id},src=PATH`);
        continue;
      }
      await fsp.access(src).catch(() => {
        throw new NotFoundError(`--secret id=${m.id}: cannot read ${src}`);
      });
      mounts.push({ destination: m.target, type: 'bind', source: path.resolve(src), options: ['ro', 'nosuid', 'nodev', 'noexec'] });
    }
  }
  return { snapshot: state.snapshot, config: state.config, env: state.env, workdir: state.workdir, user: state.user, ...(state.network ? { network: state.network } : {}), mounts };
}

/** The state before step `n`: the result of the latest earlier step of the same stage. */
async function stepState(opts: EnterOptions, n: number): Promise<Target> {
  const { record, store } = opts;
  const steps = await readSteps(record);
  const at = steps.find((e) => e.step === n);
  if (!at) throw new InvalidArgumentError(`--from-step ${n}: build ${record.id} has no step ${n}${steps.length > 0 ? ` (steps 1 to ${Math.max(...steps.map((e) => e.step))} were recorded)` : ''}`);
  const before = steps.filter((e) => e.stage === at.stage && e.step < n).at(-1);
  if (!before) throw new InvalidArgumentError(`--from-step ${n}: step ${n} (${at.text}) is its stage's FROM: nothing comes before it (try --from-step ${n + 1})`);
  let config: ImageConfig;
  let layers: Descriptor[];
  if (before.state) {
    ({ config, layers } = before.state);
  } else {
    const desc = before.key !== undefined ? await new BuildCache(path.join(store.root, 'cache')).get(before.key) : undefined;
    if (!desc) throw new NotFoundError(`--from-step ${n}: the result of step ${before.step} (${before.text}) is not in the build cache (built with --layers=false, or pruned)`);
    const img = store.image(desc);
    const [c, l] = await Promise.all([img.config(), img.layers()]);
    config = c;
    layers = l.map((x) => ({ mediaType: x.mediaType, digest: x.digest, size: x.size }));
  }
  const state = new ImageState(config, layers);
  const c = config.config ?? {};
  return { snapshot: await imageSnapshot({ store, snapshotter: opts.snapshotter }, state), config, env: c.Env ?? [], workdir: c.WorkingDir || '/', user: c.User ?? '', mounts: [] };
}
