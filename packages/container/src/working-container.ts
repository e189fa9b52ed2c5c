import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  type Descriptor,
  type Digest,
  type HistoryEntry,
  type ImageConfig,
  type Platform,
  CancelledError,
  DEFAULT_PATH,
  InvalidArgumentError,
  NotFoundError,
  chainId,
  formatReference,
  layerMediaType,
  parseReference,
  isoTime,
} from '@tsbuild/oci';
import { MNT_DETACH, mountPoints, randomHex, removeEmptyBeneath, umount } from '@tsbuild/linux';
import { type Store, configPlatform, ingestLayer, runScratchDir, writeImage } from '@tsbuild/store';
import { type CopyLayer, MergedView, type Mount, type OverlaySnapshotter, copyDirect, diff, emptyDir, mountSnapshot, planCopyLayer, tarDirectory, unpack } from '@tsbuild/snapshotter';
import type { CopyOp, ExtraMount, RunIO, RunResult, StartedRun } from '@tsbuild/runtime';
import type { RegistryClient } from '@tsbuild/registry-client';
import type { BuildContext } from './context.js';
import type { CopySource, CopySpec } from './copy-sources.js';
import { CONTAINER_LABEL, type ContainerRecord, ContainerRecords } from './records.js';
import type { RunDefaults } from './defaults.js';
import { resolveOwner, resolveUser } from './user.js';
import { ImageState } from './image-state.js';
import { type PullPolicy, storedOrPulled } from './pull-image.js';

/** What a working container works with: the store, its snapshotter, and (for pulls) a registry client. */
export interface ContainerEnv {
  store: Store;
  snapshotter: OverlaySnapshotter;
  /** A registry client for images `from` (or `copy --from`) must pull; made on first use. */
  registry?: () => Promise<RegistryClient>;
}

export interface FromOptions {
  /** The container's name (default: buildah's `<image>-working-container[-N]`). */
  name?: string;
  /** missing (default): pull when the store lacks the image; always; never. */
  pull?: PullPolicy;
  /** Runtime settings every `run` of the container starts from (limits, network, capabilities). */
  runtime?: RunDefaults;
  /** The platform whose image to take from a manifest list, or to pull (podman's `from --platform`). */
  platform?: Platform;
}

export interface ContainerRunOptions {
  /** More environment, KEY=VALUE (or KEY: the host's value), after the config's. */
  env?: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  stdin?: 'inherit' | 'ignore' | Readable;
  stdout?: Writable | 'inherit';
  stderr?: Writable | 'inherit';
  terminal?: { sizeFrom?: NodeJS.WriteStream };
  /** Overrides of the container's runtime settings for this command. */
  runtime?: RunDefaults;
  mounts?: ExtraMount[];
  /** Record the command in the next commit's history (buildah's --add-history). */
  addHistory?: boolean;
  signal?: AbortSignal;
  /**
   * The run as the caller started it ahead (runtime's startRun), with the RunStart it expects
   * the container's settings and these options to make: taken when they do (its scratch directory
   * is the run's), let go otherwise. The caller releases it whatever happens.
   */
  started?: StartedRun;
}

export interface CopyOptions {
  chown?: string;
  chmod?: string;
  /** Another working container or an image to copy from. */
  from?: string;
  /** Where sources are looked up (their root); default: host paths, relative ones from the cwd. */
  contextDir?: string;
  /** An ignore file for the context (needs contextDir); default: its .containerignore or .dockerignore. */
  ignoreFile?: string;
  checksum?: string;
  exclude?: string[];
  parents?: boolean;
  addHistory?: boolean;
  signal?: AbortSignal;
}

export interface CommitOptions {
  /** The image's name (tags); none: an unnamed image. */
  name?: string;
  format?: 'oci' | 'docker';
  /** One layer with the whole filesystem instead of the base layers plus one. */
  squash?: boolean;
  /** Seconds since the epoch for the created times and every file in the new layer. */
  timestamp?: number;
  omitHistory?: boolean;
  /** Plain tar layers (default, as buildah's --disable-compression); false: gzip. */
  disableCompression?: boolean;
  /** Remove the container after committing. */
  rm?: boolean;
}

/** How a build's container works (see WorkingContainer.forBuild). */
export interface BuildMode {
  /** Prefix of its active snapshots' keys, unique to the build and stage. */
  keyPrefix: string;
  /** The build's scratch directory. */
  scratch: string;
  /** SOURCE_DATE_EPOCH: file times in layers clamped to it. */
  sourceDateEpoch?: number;
  /** Layer compression at commit (default: plain tar; compression waits for a push). */
  compression?: { format: 'gzip' | 'zstd' | 'none'; level?: number };
}

export interface CommitResult {
  /** The image ID: its config's digest. */
  id: string;
  manifest: Descriptor;
}

/** A COPY planned as a layer (planCopyLayer) and not written: what writing it takes. */
interface UnwrittenCopy {
  /** The committed snapshot it was planned over. */
  parent: string | undefined;
  ops: CopyOp[];
  direct: boolean;
  signal?: AbortSignal;
}

/** The OCI annotations that name a manifest's base image (image-spec annotations.md). */
const BASE_NAME = 'org.opencontainers.image.base.name';
const BASE_DIGEST = 'org.opencontainers.image.base.digest';

/** At most this many entries go into a fresh snapshot by direct writes; more go through the helper (see DESIGN.md). */
export const DIRECT_COPY_MAX_ENTRIES = 1000;

/**
 * buildah's Builder: an image plus a writable snapshot plus a config being edited. Made by
 * `from`, found again by `open` (in another process, or after a crash), changed by `run`,
 * `copy`, `add`, `config` and `mount`, turned into an image by `commit`, gone after `remove`.
 * Its state lives in the store (ContainerRecords) and each method takes the container's lock,
 * so two processes acting on one container take turns.
 */
export class WorkingContainer {
  /** Active snapshots made in build mode, one per step being changed; the last is the current one. */
  private stepKeys = 0;
  /**
   * Build mode: a COPY planned as a layer and not written yet (see applyCopy). `commitStep`
   * writes its tar straight from the sources; anything that needs the filesystem before that
   * (`active`) writes the files as an unplanned COPY would.
   */
  private pendingCopy: (UnwrittenCopy & { layer: CopyLayer }) | undefined;
  /**
   * Build mode: the last layer, when `commitStep` wrote it from a planned COPY and no snapshot
   * holds it yet. If the next step needs the filesystem, the COPY is written then (baseSnapshot),
   * so that it sees the files as a written COPY leaves them (the sources' mtimes to the
   * nanosecond, never clamped to SOURCE_DATE_EPOCH), not as the layer carries them.
   */
  private unwrittenLayer: (UnwrittenCopy & { name: string }) | undefined;

  private constructor(
    private readonly env: ContainerEnv,
    /** Undefined in build mode: the container lives in memory only, for one stage of one build. */
    private readonly records: ContainerRecords | undefined,
    private rec: ContainerRecord,
    private readonly build?: BuildMode,
  ) {}

  /**
   * A container for one stage of a Dockerfile build (buildah's stage executor): kept in memory,
   * not in the store, and without a lock (the build holds the store's). Its changes go into an
   * active snapshot prepared on first use; `commitStep` turns them into a layer and goes on from
   * the new image, as buildah does with `commit` and a new `from` at every step with --layers.
   */
  static forBuild(env: ContainerEnv, state: ImageState, mode: BuildMode): WorkingContainer {
    const rec: ContainerRecord = {
      version: 1,
      id: randomHex(32),
      name: mode.keyPrefix,
      created: isoTime(),
      config: state.config,
      layers: state.layers,
      annotations: {},
      pendingHistory: [],
      snapshot: '',
    };
    return new WorkingContainer(env, undefined, rec, mode);
  }

  /** The image so far, as the builder edits it (shares the container's config and layers). */
  get state(): ImageState {
    return new ImageState(this.rec.config, this.rec.layers);
  }

  /** Build mode: goes on from `state` (a cache hit); any uncommitted change is dropped. */
  async reset(state: ImageState): Promise<void> {
    await this.discard();
    this.unwrittenLayer = undefined;
    this.rec.config = state.config;
    this.rec.layers = state.layers;
  }

  /** Build mode: removes the active snapshot, if any (a failed build's cleanup). */
  async discard(): Promise<void> {
    this.pendingCopy = undefined;
    if (this.rec.snapshot === '') return;
    await this.env.snapshotter.remove(this.rec.snapshot).catch(() => undefined);
    this.rec.snapshot = '';
  }

  /**
   * Build mode: commits the active snapshot as `name` (with `labels`) instead of leaving it to
   * `discard`: a failed RUN's state, kept for `tsbuild debug` (issue 19). False when the step
   * had no snapshot to keep.
   */
  async keep(name: string, labels: Record<string, string>): Promise<boolean> {
    if (this.rec.snapshot === '') return false;
    await this.env.snapshotter.commit(name, this.rec.snapshot, { labels });
    this.rec.snapshot = '';
    return true;
  }

  /**
   * Build mode: the changes go into `key`, an active snapshot the caller prepared (`tsbuild debug`
   * prepares one on top of a kept state, so that the session leaves that state as it was).
   */
  useSnapshot(key: string): void {
    this.rec.snapshot = key;
  }

  /** The key of the active snapshot with the container's changes ('' before the first change in build mode). */
  get snapshotKey(): string {
    return this.rec.snapshot;
  }

  get id(): string {
    return this.rec.id;
  }

  get name(): string {
    return this.rec.name;
  }

  /** The record as stored (a copy). */
  get record(): ContainerRecord {
    return structuredClone(this.rec);
  }

  /** The config being edited (a copy; change it with `updateConfig`). */
  get config(): ImageConfig {
    return structuredClone(this.rec.config);
  }

  /** The mount point `mount` uses. */
  get mountPath(): string {
    return path.join(this.env.store.root, 'containers', this.rec.id, 'merged');
  }

  static async from(env: ContainerEnv, image: string, opts: FromOptions = {}): Promise<WorkingContainer> {
    const records = new ContainerRecords(env.store);
    return env.store.withLock('shared', async () => {
      const base = image === 'scratch' ? undefined : await resolveImage(env, image, opts.pull ?? 'missing', opts.platform);
      const rec = await records.create(image, opts.name, async (id, name) => {
        const config = base?.config ?? ImageState.scratch().config;
        config.config ??= {};
        config.history ??= [];
        // No PATH is added to the config (buildah's from does not either): run gives a command the
        // default PATH when the config has none, as a RUN step gets it.
        const layers = base?.layers ?? [];
        const key = `wc-${id}`;
        await env.snapshotter.prepare(key, await imageSnapshot(env, new ImageState(config, layers)), { labels: { [CONTAINER_LABEL]: id } });
        return {
          version: 1,
          id,
          name,
          created: isoTime(),
          ...(base ? { image: { name: image, id: base.manifest.config.digest, manifest: base.descriptor } } : {}),
          config,
          layers,
          annotations: {},
          pendingHistory: [],
          snapshot: key,
          ...(opts.runtime ? { runtime: opts.runtime } : {}),
        } satisfies ContainerRecord;
      });
      return new WorkingContainer(env, records, rec);
    });
  }

  /**
   * Starts a run with `opts` before its container is found and locked (runtime's startRun), in
   * the store at `storeRoot`: what `tsbuild run` does first, so that the runtime's helper boots
   * while the store and the container's record and layers are read. The start assumes that the
   * container's own runtime settings (from `from`) change nothing it depends on (network, user
   * namespace, init, limits, devices); where they do, the run lets it go and starts another. Pass
   * it as `opts.started` to run(), or runImage(), and release it afterwards whatever happened.
   * Undefined where the store has no scratch directory yet (then it has no container either).
   */
  static async startRun(storeRoot: string, opts: ContainerRunOptions): Promise<StartedRun | undefined> {
    const scratchDir = runScratchDir(storeRoot, randomHex(6));
    if (scratchDir === undefined) return undefined;
    const r = opts.runtime ?? {};
    const start = { scratchDir, network: r.network, userns: r.userns, init: r.init, resources: r.resources, devices: r.devices, runtime: r.runtime };
    return (await runtime()).startRun(start, runIO(opts), opts.signal);
  }

  /** The container named `nameOrId` (name, ID or ID prefix); NotFoundError when there is none. */
  static async open(env: ContainerEnv, nameOrId: string): Promise<WorkingContainer> {
    const records = new ContainerRecords(env.store);
    return new WorkingContainer(env, records, await records.get(nameOrId));
  }

  /** The container named `nameOrId`, or undefined (`tsbuild run NAME` tells containers from images so). */
  static async find(env: ContainerEnv, nameOrId: string): Promise<WorkingContainer | undefined> {
    const records = new ContainerRecords(env.store);
    const rec = await records.find(nameOrId);
    return rec ? new WorkingContainer(env, records, rec) : undefined;
  }

  static async list(env: ContainerEnv): Promise<ContainerRecord[]> {
    return new ContainerRecords(env.store).list();
  }

  /**
   * Runs `fn` with the container's lock held and its record fresh from the store; what `fn` leaves
   * in `this.rec` is saved when it returns.
   */
  private async locked<T>(fn: () => Promise<T>, save = true): Promise<T> {
    const records = this.records;
    if (!records) {
      await this.active();
      return fn();
    }
    return this.env.store.withLock('shared', () =>
      records.withLock(this.rec.id, async () => {
        this.rec = await records.get(this.rec.id);
        if (this.rec.snapshot === '' || !(await this.env.snapshotter.exists(this.rec.snapshot))) {
          throw new NotFoundError(`container ${this.rec.name}: its snapshot ${this.rec.snapshot || '(none)'} is missing; remove it with tsbuild rm ${this.rec.name}`);
        }
        const before = save ? JSON.stringify(this.rec) : '';
        const out = await fn();
        // Written only when something changed (a run without --add-history changes no record).
        if (save && JSON.stringify(this.rec) !== before) await records.save(this.rec);
        return out;
      }),
    );
  }

  /** Changes the config being edited (and the other editable parts of the record) under the lock. */
  async updateConfig(edit: (rec: { config: ImageConfig; annotations: Record<string, string>; createdBy?: string; historyComment?: string }) => void): Promise<void> {
    await this.locked(async () => {
      const draft = { config: this.rec.config, annotations: this.rec.annotations, createdBy: this.rec.createdBy, historyComment: this.rec.historyComment };
      edit(draft);
      this.rec.config = draft.config;
      this.rec.annotations = draft.annotations;
      if (draft.createdBy !== undefined) this.rec.createdBy = draft.createdBy;
      if (draft.historyComment !== undefined) this.rec.historyComment = draft.historyComment;
    });
  }

  async rename(name: string): Promise<void> {
    await this.persisted().rename(this.rec.id, name);
    this.rec.name = name;
  }

  /** Whether `mount` has mounted the container in this mount namespace. */
  isMounted(): boolean {
    return this.records !== undefined && mountPoints().has(this.mountPath);
  }

  private persisted(): ContainerRecords {
    if (!this.records) throw new InvalidArgumentError(`${this.rec.name} is a build's container, not one kept in the store`);
    return this.records;
  }

  /**
   * The committed snapshot of the base layers, unpacked again from the store's blobs when it is
   * missing (a cache hit after a prune, a base image never unpacked); undefined for no layers.
   */
  async baseSnapshot(): Promise<string | undefined> {
    const u = this.unwrittenLayer;
    if (u !== undefined && this.state.snapshot === u.name) {
      this.unwrittenLayer = undefined;
      const s = this.env.snapshotter;
      if (!(await s.exists(u.name))) {
        // The COPY written as it would have been, committed under the layer's chainID; should
        // that fail, the snapshot is unpacked from the layer (imageSnapshot) as for any image.
        const key = `${this.build!.keyPrefix}-${++this.stepKeys}`;
        try {
          await s.prepare(key, u.parent);
          this.rec.snapshot = key;
          await this.applyOps(u.ops, this.copyScratch(), u.direct, u.signal);
          await s.commit(u.name, key);
        } catch (e) {
          if (u.signal?.aborted) throw e;
          await s.remove(key).catch(() => undefined);
        } finally {
          this.rec.snapshot = '';
        }
      }
    }
    return imageSnapshot(this.env, this.state);
  }

  /** The active snapshot that takes the changes; in build mode prepared on first use, on the image so far. */
  private async active(): Promise<string> {
    if (this.rec.snapshot !== '') return this.rec.snapshot;
    const b = this.build!;
    const key = `${b.keyPrefix}-${++this.stepKeys}`;
    await this.env.snapshotter.prepare(key, await this.baseSnapshot());
    this.rec.snapshot = key;
    const pending = this.pendingCopy;
    if (pending !== undefined) {
      this.pendingCopy = undefined;
      await this.applyOps(pending.ops, this.copyScratch(), pending.direct, pending.signal);
    }
    return key;
  }

  /** Build mode: the snapshot `resolveUser` and MergedView read the container's files from (its changes included). */
  async filesystem(): Promise<string | undefined> {
    if (this.pendingCopy !== undefined) await this.active();
    return this.rec.snapshot !== '' ? this.rec.snapshot : this.baseSnapshot();
  }

  /** The container's root filesystem for the runtime: its `mount` when it has one (one overlay per upperdir), else its snapshot's. */
  private async rootfs(): Promise<Mount[]> {
    if (this.isMounted()) return [{ type: 'bind', source: this.mountPath, options: ['rbind', 'rw'] }];
    return this.env.snapshotter.mounts(this.rec.snapshot);
  }

  private scratch(): string {
    return path.join(this.env.store.root, 'tmp', `wc-${this.rec.id.slice(0, 12)}-${randomHex(4)}`);
  }

  /**
   * Runs `argv` in the container's filesystem, as the config says (Env, WorkingDir, User) unless
   * the options say otherwise. What the command changes stays in the container.
   */
  async run(argv: string[], opts: ContainerRunOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new InvalidArgumentError('run: no command given');
    await this.checkEmulation();
    return this.locked(async () => {
      const c = this.rec.config.config ?? {};
      const env = new Map<string, string>();
      for (const kv of [...(c.Env ?? []), ...(opts.env ?? [])]) {
        const eq = kv.indexOf('=');
        if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
        else if (process.env[kv] !== undefined) env.set(kv, process.env[kv]!);
      }
      const res = await this.exec(argv, env, opts.user ?? c.User ?? '', opts);
      if (opts.addHistory) this.rec.pendingHistory.push({ created: isoTime(), created_by: `/bin/sh -c ${argv.join(' ')}`, empty_layer: true });
      return res;
    });
  }

  /**
   * Build mode: RUN. The caller (the Dockerfile interpreter) has made the environment (the image's
   * Env plus build args) and resolved nothing else: user, HOME, PATH and the working directory are
   * settled here as for `run`.
   */
  async runStep(argv: string[], env: Map<string, string>, user: string, opts: ContainerRunOptions & { workdir: string }): Promise<RunResult> {
    await this.checkEmulation();
    return this.locked(() => this.exec(argv, new Map(env), user, opts));
  }

  /**
   * A command of another architecture than this machine's runs under QEMU user emulation, through
   * the kernel's binfmt_misc: the runtime needs nothing else (the F flag keeps the interpreter
   * open from the host, and the host's seccomp filter sees qemu's syscalls). Checked before the
   * lock, whose first step in build mode prepares a snapshot: a platform without an emulator is
   * one line naming it and what to install, and nothing is left behind.
   */
  private async checkEmulation(): Promise<void> {
    (await runtime()).emulatorFor(configPlatform(this.rec.config));
  }

  /** The one way a command runs in a container: `run`, and every RUN of a build. */
  private async exec(argv: string[], env: Map<string, string>, userSpec: string, opts: ContainerRunOptions): Promise<RunResult> {
    const c = this.rec.config.config ?? {};
    if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
    const { home, ...user } = await resolveUser(this.env.snapshotter, this.rec.snapshot, userSpec);
    // runc sets HOME from the user's passwd entry when the environment has none (and so do
    // buildah and docker): an ENV or a build arg named HOME wins. Not part of the image's Env.
    if (!env.has('HOME')) env.set('HOME', home ?? '/');
    const scratch = opts.started?.scratchDir ?? (this.build ? path.join(this.build.scratch, `run-${this.stepKeys}-${randomHex(3)}`) : this.scratch());
    const madeEtc = this.isMounted() ? await missingEtcFiles(this.mountPath) : [];
    try {
      const { run } = await runtime();
      return await run(
        {
          ...this.rec.runtime,
          ...opts.runtime,
          ...(opts.mounts && opts.mounts.length > 0 ? { mounts: opts.mounts } : {}),
          args: argv,
          env: [...env].map(([k, v]) => `${k}=${v}`),
          // The WORKDIR as its directory was made: without `..` components, which chdir(2)
          // would otherwise resolve through directories that need not exist (as buildah does).
          cwd: path.posix.resolve('/', opts.workdir ?? (c.WorkingDir || '/')),
          user,
          rootfs: await this.rootfs(),
          scratchDir: scratch,
          cacheDir: path.join(this.env.store.root, 'runtime-cache'),
          // A build's RUN keeps the runtime's host name; a container's is its own (or as given).
          ...(opts.hostname !== undefined || !this.build ? { hostname: opts.hostname ?? opts.runtime?.hostname ?? this.rec.runtime?.hostname ?? this.rec.id.slice(0, 12) } : {}),
        },
        runIO(opts),
        opts.signal,
        opts.started,
      );
    } finally {
      await removeEtcFiles(this.mountPath, madeEtc);
      await fsp.rm(scratch, { recursive: true, force: true });
    }
  }

  /** Of `paths` and their ancestors, those the container lacks: mountpoints the runtime will create, deepest first. */
  async missingPaths(paths: string[]): Promise<string[]> {
    if (paths.length === 0) return [];
    const view = await MergedView.open(this.env.snapshotter, await this.filesystem());
    const out = new Set<string>();
    for (const p of paths) {
      for (let d = path.posix.normalize(p); d !== '/'; d = path.posix.dirname(d)) {
        if (await view.stat(d)) break;
        out.add(d);
      }
    }
    return [...out].sort((a, b) => b.split('/').length - a.split('/').length);
  }

  /**
   * Removes from the container's changes the mountpoints the runtime created for RUN --mount
   * (empty directories and empty files only: anything the command put there on its own stays),
   * so that no trace of a mount reaches the layer.
   */
  async removeMountpoints(paths: string[]): Promise<void> {
    if (paths.length === 0 || this.rec.snapshot === '') return;
    const upper = await this.env.snapshotter.fsDir(this.rec.snapshot);
    // Never through a link: the RUN may have replaced a directory on the way with a symlink to a
    // host path (BuildKit CVE-2024-23652); then the path is no longer the mountpoint we made.
    for (const p of paths) removeEmptyBeneath(upper, p);
  }

  /** Who owns what WORKDIR makes under USER `spec`, as BuildKit's file operations resolve it (see resolveOwner). */
  async owner(spec: string): Promise<{ uid: number; gid: number }> {
    return resolveOwner(this.env.snapshotter, await this.filesystem(), spec);
  }

  /** COPY semantics: sources from the host (or `contextDir`, or `from` a container or image) into `dest`. */
  copy(sources: CopySource[], dest: string, opts: CopyOptions = {}): Promise<void> {
    return this.copyOrAdd('COPY', sources, dest, opts);
  }

  /** ADD semantics: as copy, and local archives are unpacked and URLs fetched. */
  add(sources: CopySource[], dest: string, opts: CopyOptions = {}): Promise<void> {
    return this.copyOrAdd('ADD', sources, dest, opts);
  }

  private async copyOrAdd(kind: 'COPY' | 'ADD', sources: CopySource[], dest: string, opts: CopyOptions): Promise<void> {
    if (sources.length === 0) throw new InvalidArgumentError(`${kind.toLowerCase()}: no source given`);
    if (opts.ignoreFile !== undefined && opts.contextDir === undefined) throw new InvalidArgumentError('--ignorefile needs --contextdir');
    await this.locked(async () => {
      const scratch = this.scratch();
      const s = this.env.snapshotter;
      try {
        // Without --contextdir the sources are host paths (relative ones from the cwd), resolved
        // from `/` as buildah does; with it, paths inside that directory, as in a build context.
        const contextDir = opts.contextDir !== undefined ? path.resolve(opts.contextDir) : '/';
        const srcs = opts.contextDir !== undefined || opts.from !== undefined ? sources : sources.map((x) => (typeof x === 'string' && !/^https?:\/\//.test(x) ? path.resolve(x) : x));
        const spec: CopySpec = {
          kind,
          sources: srcs,
          dest,
          workdir: this.rec.config.config?.WorkingDir || '/',
          ...(opts.from !== undefined ? { from: opts.from } : {}),
          ...(opts.chown !== undefined ? { chown: opts.chown } : {}),
          ...(opts.chmod !== undefined ? { chmod: opts.chmod } : {}),
          ...(opts.checksum !== undefined ? { checksum: opts.checksum } : {}),
          ...(opts.exclude ? { exclude: opts.exclude } : {}),
          ...(opts.parents ? { parents: true } : {}),
        };
        // Loaded here: only copy and add need the context, archive and download code.
        const [{ BuildContext }, { resolveCopy }] = await Promise.all([import('./context.js'), import('./copy-sources.js')]);
        let ctx: Promise<BuildContext> | undefined;
        const op = await resolveCopy(spec, {
          staging: path.join(scratch, 'sources'),
          context: () =>
            (ctx ??= BuildContext.open(
              contextDir,
              undefined,
              scratch,
              opts.contextDir !== undefined ? (opts.ignoreFile !== undefined ? { file: opts.ignoreFile } : {}) : false,
              opts.contextDir !== undefined ? `in ${contextDir}` : 'on this machine',
            )),
          fromView: (from) => this.fromView(from),
          owner: (spec) => resolveUser(s, this.rec.snapshot, spec, true),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        await this.applyOps([op], scratch, true, opts.signal);
        if (opts.addHistory) {
          const words = sources.map((x) => (typeof x === 'string' ? x : path.basename(x.file)));
          this.rec.pendingHistory.push({ created: isoTime(), created_by: `/bin/sh -c #(nop) ${kind} ${words.join(' ')} ${dest}`, empty_layer: true });
        }
      } finally {
        await fsp.rm(scratch, { recursive: true, force: true });
      }
    });
  }

  /**
   * Build mode: COPY/ADD (an op resolveCopy made) and WORKDIR's mkdir. `direct: false` sends
   * the op through the helper even into a fresh snapshot (many files: see DIRECT_COPY_MAX_ENTRIES).
   */
  async applyCopy(ops: CopyOp[], opts: { direct?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    // A COPY that starts a step is planned, not written: if the step's commit comes next, its
    // layer is written straight from the sources and no file is made (see planCopyLayer; the
    // committed snapshot is unpacked from the layer when a later step needs it). A plan that
    // cannot be made, or fails, leaves the COPY to the writers, whose errors are the COPY's.
    const op = ops[0];
    if (this.build && this.rec.snapshot === '' && this.pendingCopy === undefined && ops.length === 1 && op?.op === 'copy') {
      const parent = await this.baseSnapshot();
      const layer = await planCopyLayer(this.env.snapshotter, parent, op).catch(() => undefined);
      if (opts.signal?.aborted) throw new CancelledError('cancelled');
      if (layer !== undefined) {
        this.pendingCopy = { layer, parent, ops, direct: opts.direct ?? true, ...(opts.signal ? { signal: opts.signal } : {}) };
        return;
      }
    }
    await this.locked(() => this.applyOps(ops, this.copyScratch(), opts.direct ?? true, opts.signal));
  }

  private copyScratch(): string {
    return path.join(this.build?.scratch ?? this.scratch(), `copy-${this.stepKeys}-${randomHex(3)}`);
  }

  /**
   * Copy operations into the container: written straight into the snapshot's upperdir when it is
   * still empty and not mounted (no helper, no mount; if the direct write fails, its upperdir is
   * emptied again, so the error and the result are the helper's own), else through the runtime
   * helper on the mounted rootfs.
   */
  private async applyOps(ops: CopyOp[], scratch: string, direct: boolean, signal?: AbortSignal): Promise<void> {
    const s = this.env.snapshotter;
    const upper = await s.fsDir(this.rec.snapshot);
    if (direct && !this.isMounted() && (await fsp.readdir(upper)).length === 0) {
      try {
        await copyDirect(s, (await s.stat(this.rec.snapshot)).parent, upper, ops);
        return;
      } catch {
        if (signal?.aborted) throw new CancelledError('cancelled');
        await emptyDir(upper);
      }
    }
    try {
      await (await runtime()).copyInto(await this.rootfs(), scratch, ops, signal);
    } finally {
      if (this.build) await fsp.rm(scratch, { recursive: true, force: true });
    }
  }

  /**
   * Build mode: the changes so far as one layer of the image (diff → blob → the snapshot committed
   * under the new chainID), then on from that image. With `dropIfEmpty` a change that touched
   * nothing adds no layer, only the history entry. `historyIndex` places the entry (a stage built
   * without layers commits once, with the entry of its last change).
   */
  async commitStep(history: HistoryEntry, opts: { dropIfEmpty?: boolean; historyIndex?: number } = {}): Promise<Descriptor | undefined> {
    const b = this.build!;
    const s = this.env.snapshotter;
    const key = this.rec.snapshot;
    const state = this.state;
    const pending = this.pendingCopy;
    if (pending !== undefined && key === '' && !(opts.dropIfEmpty && pending.layer.empty)) {
      this.pendingCopy = undefined;
      const tarOpts = b.sourceDateEpoch !== undefined ? { sourceDateEpoch: b.sourceDateEpoch } : {};
      const layer = await this.layer(pending.layer.tar(tarOpts), b.compression?.format ?? 'none', b.compression?.level);
      state.addLayer(layer.desc, layer.diffID, history, opts.historyIndex);
      this.unwrittenLayer = { parent: pending.parent, ops: pending.ops, direct: pending.direct, ...(pending.signal ? { signal: pending.signal } : {}), name: chainId(state.config.rootfs.diff_ids)! };
      return layer.desc;
    }
    if (key === '' || (opts.dropIfEmpty && (await fsp.readdir(await s.fsDir(key))).length === 0)) {
      await this.discard();
      state.addHistory(history);
      return undefined;
    }
    const layer = await this.layer(diff(s, key, b.sourceDateEpoch !== undefined ? { sourceDateEpoch: b.sourceDateEpoch } : {}), b.compression?.format ?? 'none', b.compression?.level);
    state.addLayer(layer.desc, layer.diffID, history, opts.historyIndex);
    const name = chainId(state.config.rootfs.diff_ids)!;
    if (await s.exists(name)) {
      await s.remove(key); // the same layer on the same parent was committed before: reuse it
    } else {
      try {
        await s.commit(name, key);
      } catch (e) {
        if ((e as { code?: string }).code !== 'ALREADY_EXISTS') throw e;
        await s.remove(key);
      }
    }
    this.rec.snapshot = '';
    return layer.desc;
  }

  /** A layer tar into the store as a blob: its descriptor (OCI media type) and diffID. */
  private async layer(tar: Readable, compression: 'gzip' | 'zstd' | 'none', level?: number): Promise<{ desc: Descriptor; diffID: Digest }> {
    const layer = await ingestLayer(this.env.store.content, tar, { compression, ...(compression !== 'none' && level !== undefined ? { level } : {}) });
    return { desc: { mediaType: layerMediaType('oci', compression), digest: layer.digest, size: layer.size }, diffID: layer.diffID };
  }

  /** The filesystem `--from` names: another working container (as it is now), or an image. */
  private async fromView(from: string): Promise<MergedView> {
    const s = this.env.snapshotter;
    const other = await this.records?.find(from);
    if (other) return MergedView.open(s, other.snapshot);
    const img = await resolveImage(this.env, from, 'missing');
    return MergedView.open(s, await imageSnapshot(this.env, new ImageState(img.config, img.layers)));
  }

  /**
   * Mounts the container's filesystem read-write at `mountPath` in this mount namespace (as
   * `buildah mount`): edits made there are in the next commit. Until `unmount`.
   */
  async mount(): Promise<string> {
    return this.locked(async () => {
      const target = this.mountPath;
      if (this.isMounted()) return target;
      await fsp.mkdir(target, { recursive: true, mode: 0o700 });
      for (const m of await this.env.snapshotter.mounts(this.rec.snapshot)) mountSnapshot(m, target, { readOnly: false, what: 'container' });
      return target;
    }, false);
  }

  async unmount(): Promise<void> {
    await this.locked(async () => {
      if (this.isMounted()) umount(this.mountPath, MNT_DETACH);
      await fsp.rmdir(this.mountPath).catch(() => undefined);
    }, false);
  }

  /**
   * An image of the base image plus one layer with everything changed since `from` (buildah's
   * model: a second commit's one new layer holds all changes so far), the config as edited, and
   * a history entry for the layer.
   */
  async commit(opts: CommitOptions = {}): Promise<CommitResult> {
    const result = await this.locked(async () => {
      const { store, snapshotter: s } = this.env;
      const created = isoTime(opts.timestamp !== undefined ? opts.timestamp * 1000 : Date.now());
      const compression = opts.disableCompression === false ? 'gzip' : 'none';
      const tarOpts = opts.timestamp !== undefined ? { timestamp: opts.timestamp } : {};
      const config: ImageConfig = structuredClone(this.rec.config);
      let layers: Descriptor[];
      // As buildah 1.28 writes the layer's entry: created_by "/bin/sh" unless `config --created-by`,
      // and the comment "FROM <base image>" unless `config --history-comment` (none from scratch).
      const comment = this.rec.historyComment || (this.rec.image ? `FROM ${canonicalName(this.rec.image.name)}` : '');
      const entry: HistoryEntry = { created, created_by: this.rec.createdBy || '/bin/sh', ...(comment ? { comment } : {}) };
      if (opts.squash) {
        const layer = await this.squashedLayer(compression, tarOpts);
        layers = [layer.desc];
        config.rootfs = { type: 'layers', diff_ids: [layer.diffID] };
        config.history = [entry];
      } else {
        const layer = await this.layer(diff(s, this.rec.snapshot, tarOpts), compression);
        layers = [...this.rec.layers, layer.desc];
        config.rootfs = { type: 'layers', diff_ids: [...config.rootfs.diff_ids, layer.diffID] };
        config.history = [...(config.history ?? []), ...this.rec.pendingHistory.map((h) => ({ ...h, created })), entry];
      }
      if (opts.omitHistory) delete config.history;
      config.created = created;
      // As buildah: the manifest names the base image it was made from (OCI only; Docker manifests have no annotations).
      const base: Record<string, string> = this.rec.image ? { [BASE_NAME]: canonicalName(this.rec.image.name), [BASE_DIGEST]: this.rec.image.manifest.digest } : {};
      const written = await writeImage(store, config, layers, { format: opts.format ?? 'oci', annotations: { ...base, ...this.rec.annotations } });
      if (opts.name !== undefined) await store.setName(opts.name, written.descriptor);
      else await store.addImage(written.descriptor);
      return { id: written.configDigest, manifest: written.descriptor };
    }, false);
    if (opts.rm) await this.remove();
    return result;
  }

  /**
   * The whole filesystem as one layer: the merged view (the container's mount, or one made for
   * this in a private directory) read as a plain tree, so no overlay whiteout or opaque marker
   * can reach the layer.
   */
  private async squashedLayer(compression: 'gzip' | 'none', tarOpts: { timestamp?: number }): Promise<{ desc: Descriptor; diffID: Digest }> {
    const s = this.env.snapshotter;
    let dir = this.mountPath;
    let temp: string | undefined;
    if (!this.isMounted()) {
      temp = dir = this.scratch();
      await fsp.mkdir(temp, { recursive: true, mode: 0o700 });
      for (const m of await s.mounts(this.rec.snapshot)) mountSnapshot(m, temp, { readOnly: true, what: 'container' });
    }
    try {
      return await this.layer(tarDirectory(dir, tarOpts), compression);
    } finally {
      if (temp !== undefined) {
        umount(temp, MNT_DETACH);
        await fsp.rmdir(temp); // never a recursive remove: it would reach through a mount that stayed
      }
    }
  }

  /** Removes the container: its mount, snapshot and record. */
  async remove(): Promise<void> {
    const records = this.persisted();
    await this.env.store.withLock('shared', () =>
      records.withLock(this.rec.id, async () => {
        if (this.isMounted()) umount(this.mountPath, MNT_DETACH);
        if (this.rec.snapshot !== '') await this.env.snapshotter.remove(this.rec.snapshot).catch((e: { code?: string }) => {
          if (e.code !== 'NOT_FOUND') throw e;
        });
      }),
    );
    await records.remove(this.rec.id);
  }
}

/**
 * The committed snapshot of an image's layers (named by the chainID of its diff_ids), unpacked
 * again from the store's blobs when it is missing; undefined for an image without layers.
 */
export async function imageSnapshot(env: Pick<ContainerEnv, 'store' | 'snapshotter'>, state: ImageState): Promise<string | undefined> {
  const name = state.snapshot;
  if (name === undefined || (await env.snapshotter.exists(name))) return name;
  const diffIds = state.config.rootfs.diff_ids;
  const content = env.store.content;
  return unpack(env.snapshotter, state.layers.map((l, i) => ({ diffID: diffIds[i]!, open: () => content.read(l.digest) })));
}

/**
 * The runtime's /etc mountpoints (hosts, hostname, resolv.conf) a run would create in a mounted
 * container: its rootfs is then a bind of the mount, not an overlay the runtime can give a
 * lowerdir of empty mountpoints (runtime etc-files.ts), so missing ones are made in the upperdir.
 * They are removed after the run, so that a run leaves the same layer mounted or not. Only a real
 * /etc directory is looked at: a symlink there would lead the host's lstat/unlink off the container.
 */
async function missingEtcFiles(root: string): Promise<string[]> {
  const etc = path.join(root, 'etc');
  const st = await fsp.lstat(etc).catch(() => undefined);
  if (st !== undefined && !st.isDirectory()) return [];
  const missing: string[] = [];
  for (const f of ['hosts', 'hostname', 'resolv.conf']) if (st === undefined || !(await fsp.lstat(path.join(etc, f)).catch(() => undefined))) missing.push(f);
  return st === undefined ? [...missing, ''] : missing;
}

async function removeEtcFiles(root: string, made: string[]): Promise<void> {
  if (made.length === 0) return;
  const etc = path.join(root, 'etc');
  if (!(await fsp.lstat(etc).catch(() => undefined))?.isDirectory()) return;
  for (const f of made) {
    if (f === '') continue;
    const st = await fsp.lstat(path.join(etc, f)).catch(() => undefined);
    if (st?.isFile() && st.size === 0) await fsp.unlink(path.join(etc, f)).catch(() => undefined);
  }
  if (made.includes('')) await fsp.rmdir(etc).catch(() => undefined); // made by the run, and left empty
}

/** An image name as buildah names a base in history: fully qualified (docker.io/library/busybox:latest); an ID as it was given. */
function canonicalName(name: string): string {
  if (/^(sha256:)?[0-9a-f]{12,64}$/.test(name)) return name;
  try {
    return formatReference(parseReference(name, { defaultTag: true }));
  } catch {
    return name;
  }
}

/** The streams of a run with these options, as run() gets them. */
function runIO(opts: ContainerRunOptions): RunIO {
  return { stdin: opts.stdin ?? 'ignore', stdout: opts.stdout ?? 'inherit', stderr: opts.stderr ?? 'inherit', ...(opts.terminal ? { terminal: opts.terminal } : {}) };
}

/**
 * The runtime, loaded on first use: `from`, `commit`, `containers` and the like never start a
 * process, and skip its modules (seccomp tables, capabilities, the helper chain) at start-up.
 */
function runtime(): Promise<typeof import('@tsbuild/runtime')> {
  return import('@tsbuild/runtime');
}

/** An image from the store, pulled as `pull` says when missing (or always), with its manifest and config. */
async function resolveImage(env: ContainerEnv, name: string, pull: PullPolicy, platform?: Platform): Promise<{ descriptor: Descriptor; manifest: { config: Descriptor }; config: ImageConfig; layers: Descriptor[] }> {
  const descriptor = await storedOrPulled(env.store, name, pull, env.registry, `image ${name}`, platform);
  const img = env.store.image(descriptor);
  const [manifest, config] = await Promise.all([img.manifest(), img.config()]);
  return { descriptor, manifest, config: structuredClone(config), layers: manifest.layers };
}
