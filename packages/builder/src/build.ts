import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import {
  type Descriptor,
  type Digest,
  type HistoryEntry,
  type ImageConfig,
  type ImageManifest,
  CancelledError,
  InvalidArgumentError,
  MediaType,
  NotFoundError,
  TsbuildError,
  chainId,
  formatPlatform,
  formatReference,
  hostPlatform,
  layerCompression,
  layerMediaType,
  parsePlatform,
  parseReference,
  type Reference,
} from '@tsbuild/oci';
import { type Store, ingestLayer } from '@tsbuild/store';
import { type OverlaySnapshotter, diff, unpack } from '@tsbuild/snapshotter';
import { type CopyOp, copyInto, run } from '@tsbuild/runtime';
import { BuildContext } from './context.js';
import { BuildCache, cacheKey, hashSources } from './cache.js';
import { RegistryClient, authFileProvider, pull } from '@tsbuild/registry-client';
import { DockerfileError, KEYWORDS, type Instruction, type ParsedDockerfile, type Stage, parseDockerfile, parseJsonForm } from './dockerfile.js';
import { expandWord, expandWords, splitRaw } from './expand.js';
import { ImageState } from './image-state.js';
import { MergedView } from './merged-view.js';
import { download, extractArchive, isArchive } from './add-sources.js';
import { resolveUser } from './user.js';
import type { RunDefaults } from './run-image.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type BuildEvent =
  | { type: 'step'; step: number; total: number; stage: number; text: string; cached: boolean }
  | { type: 'step-done'; step: number; ms: number }
  | { type: 'layer'; step: number; digest: Digest; size: number }
  | { type: 'stage-done'; stage: number; name?: string }
  | { type: 'done'; imageId: Digest; manifest: Descriptor; names: string[] };

export interface BuildOptions {
  store: Store;
  snapshotter: OverlaySnapshotter;
  /** The build context directory. */
  context: string;
  /** Path of the Dockerfile (default: CONTEXT/Dockerfile), or its text via `dockerfileText`. */
  dockerfile?: string;
  dockerfileText?: string;
  /** Names to give the image (normalised like docker's). */
  tags?: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  /** Clamp timestamps (config created, history, file mtimes) for reproducible builds. */
  sourceDateEpoch?: number;
  /** Where RUN output goes (default: this process's stdout and stderr). */
  stdout?: Writable;
  stderr?: Writable;
  onEvent?: (e: BuildEvent) => void;
  signal?: AbortSignal;
  /** Settings for every RUN step's container: limits, network, capabilities, seccomp, runtime. */
  runtime?: RunDefaults;
  /** Run every step even when the cache has it (results still go into the cache). */
  noCache?: boolean;
  /** One layer per filesystem-changing instruction (default), or one per stage (false, buildah's default; no cache). */
  layers?: boolean;
  /** The final stage's new layers become one layer (base layers are kept). */
  squash?: boolean;
  /** Manifest format: OCI (default) or Docker schema 2. */
  format?: 'oci' | 'docker';
  /** Added to the image config's Labels. */
  labels?: Record<string, string>;
  /** Added to the manifest's annotations. */
  annotations?: Record<string, string>;
  compression?: { format?: 'gzip' | 'zstd'; level?: number };
  /** When FROM and COPY --from pull from a registry: only images the store lacks (default), always, or never. */
  pull?: 'missing' | 'always' | 'never';
  /** The client pulls go through (default: one with podman's and docker's stored credentials). */
  registry?: RegistryClient;
}

export interface BuildResult {
  /** The image ID: the digest of the config, as docker and buildah define it. */
  imageId: Digest;
  manifest: Descriptor;
  names: string[];
}

/**
 * Builds a Dockerfile into an image in the store: one layer per filesystem-changing
 * instruction (RUN, COPY, WORKDIR that creates its directory), each the diff of an overlay
 * snapshot committed under the chainID of the layers so far. Every instruction's result is
 * cached under a key made of its parent's key, the instruction, the build args in scope and, for
 * COPY, the content of what it copies; a rebuild with nothing changed runs nothing and yields the
 * same image ID. Nothing is named until every step succeeded; on failure the build's active
 * snapshots and scratch files are removed, so the store keeps only the cache of completed steps.
 */
export async function build(options: BuildOptions): Promise<BuildResult> {
  // Relative paths are taken from the current directory, once, here.
  const opts: BuildOptions = {
    ...options,
    context: path.resolve(options.context),
    ...(options.dockerfile !== undefined ? { dockerfile: path.resolve(options.dockerfile) } : {}),
  };
  const { store } = opts;
  const dockerfilePath = opts.dockerfileText === undefined ? (opts.dockerfile ?? path.join(opts.context, 'Dockerfile')) : opts.dockerfile;
  const text = opts.dockerfileText ?? (await readDockerfile(dockerfilePath!));
  const parsed = parseDockerfile(text, dockerfilePath ? path.basename(dockerfilePath) : 'Dockerfile');
  const tags = (opts.tags ?? []).map((t) => formatReference(parseReference(t)));
  if (opts.format === 'docker' && opts.compression?.format === 'zstd') {
    throw new InvalidArgumentError('--format docker needs gzip layers: Docker schema 2 has no zstd layer type');
  }
  return store.withLock('shared', async () => {
    const scratch = path.join(store.root, 'tmp', `build-${randomBytes(6).toString('hex')}`);
    await fsp.mkdir(scratch, { recursive: true });
    const b = new Builder(opts, parsed, scratch);
    try {
      const final = await b.run();
      if (opts.labels) Object.assign((final.container.Labels ??= {}), opts.labels);
      const manifest = await writeImage(store, final, { format: opts.format ?? 'oci', ...(opts.annotations ? { annotations: opts.annotations } : {}) });
      for (const t of tags) await store.setName(t, manifest.descriptor);
      if (tags.length === 0) await store.addImage(manifest.descriptor);
      const result = { imageId: manifest.configDigest, manifest: manifest.descriptor, names: tags };
      opts.onEvent?.({ type: 'done', ...result });
      return result;
    } finally {
      await b.cleanup();
      await fsp.rm(scratch, { recursive: true, force: true });
    }
  });
}

async function readDockerfile(p: string): Promise<string> {
  try {
    return await fsp.readFile(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`Dockerfile ${p}: no such file`);
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new InvalidArgumentError(`Dockerfile ${p}: is a directory`);
    throw e;
  }
}

type Mounts = Awaited<ReturnType<OverlaySnapshotter['prepare']>>;
type CopyFiles = Extract<CopyOp, { op: 'copy' }>;

/** Build args that docker passes to RUN without an ARG declaration, and keeps out of the cache key. */
const PROXY_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

/** Per-stage build state besides the image itself. */
interface StageRun {
  stage: Stage;
  state: ImageState;
  /** Cache key of the state so far. */
  key: Digest;
  /** Whether each instruction becomes its own layer (and is cached). */
  layered: boolean;
  /** With layers off: the one active snapshot every change of the stage goes into. */
  pending?: { key: string; mounts: Mounts; historyIndex: number };
  args: Map<string, string>;
}

class Builder {
  private readonly active = new Set<string>();
  private contextP?: Promise<BuildContext>;
  private step = 0;
  private total = 0;
  private readonly stageResults = new Map<number, { state: ImageState; key: Digest }>();
  private readonly id = randomBytes(6).toString('hex');
  private readonly cache: BuildCache;
  private registryClient?: RegistryClient;

  constructor(
    private readonly opts: BuildOptions,
    private readonly df: ParsedDockerfile,
    private readonly scratch: string,
  ) {
    this.cache = new BuildCache(path.join(opts.store.root, 'cache'));
  }

  /**
   * Builds the target and the stages it needs. A stage starts as soon as the stages it uses
   * (FROM, COPY --from) are done, so independent stages build in parallel.
   */
  async run(): Promise<ImageState> {
    const target = this.targetStage();
    const needed = this.neededStages(target);
    this.total = needed.reduce((n, s) => n + 1 + s.instructions.length, 0);
    const started = new Map<number, Promise<{ state: ImageState; key: Digest }>>();
    const start = (stage: Stage): Promise<{ state: ImageState; key: Digest }> => {
      let p = started.get(stage.index);
      if (!p) {
        p = (async () => {
          await Promise.all(this.dependencies(stage).map(start));
          const r = await this.buildStage(stage, stage === target);
          this.stageResults.set(stage.index, r);
          this.opts.onEvent?.({ type: 'stage-done', stage: stage.index, ...(stage.name ? { name: stage.name } : {}) });
          return r;
        })();
        started.set(stage.index, p);
      }
      return p;
    };
    const all = needed.map(start);
    // Wait for every stage, so that a failure in one never leaves another running.
    const results = await Promise.allSettled(all);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return (await start(target)).state;
  }

  async cleanup(): Promise<void> {
    if (this.registryClient && this.registryClient !== this.opts.registry) await this.registryClient.close();
    for (const key of this.active) await this.opts.snapshotter.remove(key).catch(() => undefined);
    this.active.clear();
  }

  private targetStage(): Stage {
    if (this.opts.target === undefined) return this.df.stages.at(-1)!;
    const t = this.df.stages.find((s) => s.name === this.opts.target!.toLowerCase());
    if (!t) throw new InvalidArgumentError(`target stage "${this.opts.target}" could not be found in ${this.df.file}`);
    return t;
  }

  /** The target and the stages it builds on, in Dockerfile order; others are not built. */
  private neededStages(target: Stage): Stage[] {
    const need = new Set<number>();
    const visit = (s: Stage) => {
      if (need.has(s.index)) return;
      need.add(s.index);
      for (const dep of this.dependencies(s)) visit(dep);
    };
    visit(target);
    return this.df.stages.filter((s) => need.has(s.index));
  }

  /** The stages a stage uses: its FROM, and every COPY --from that names a stage. */
  private dependencies(s: Stage): Stage[] {
    const deps: Stage[] = [];
    const base = this.stageByName(this.fromImage(s), s.index);
    if (base) deps.push(base);
    for (const ins of s.instructions) {
      const from = ins.keyword === 'COPY' ? ins.flags.get('from')?.at(-1) : undefined;
      const dep = from !== undefined ? this.stageByName(expandWord(from, this.globalArgs(), this.df.escape), s.index) : undefined;
      if (dep && !deps.includes(dep)) deps.push(dep);
    }
    return deps;
  }

  private stageByName(name: string, before: number): Stage | undefined {
    const n = name.toLowerCase();
    return this.df.stages.find((s) => s.index < before && (s.name === n || String(s.index) === n));
  }

  /** Global ARGs (before the first FROM), with the platform ARGs docker predefines there. */
  private globalArgs(): Map<string, string> {
    const m = platformArgs();
    for (const ins of this.df.globalArgs) {
      for (const w of expandWords(ins.args, m, this.df.escape)) {
        const eq = w.indexOf('=');
        const name = eq >= 0 ? w.slice(0, eq) : w;
        const v = this.opts.buildArgs?.[name] ?? (eq >= 0 ? w.slice(eq + 1) : undefined);
        if (v !== undefined) m.set(name, v);
      }
    }
    return m;
  }

  private fromImage(stage: Stage): string {
    const words = expandWords(stage.from.args, this.globalArgs(), this.df.escape);
    return words[0]!;
  }

  private fail(ins: Instruction, message: string): never {
    throw new DockerfileError(this.df.file, ins.line, message);
  }

  private emitStep(stage: Stage, text: string, cached: boolean): number {
    this.step++;
    this.opts.onEvent?.({ type: 'step', step: this.step, total: this.total, stage: stage.index, text, cached });
    return this.step;
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new CancelledError('build cancelled');
  }

  private async fromState(stage: Stage): Promise<{ state: ImageState; key: Digest }> {
    const { store } = this.opts;
    const fromName = this.fromImage(stage);
    const platform = stage.from.flags.get('platform')?.at(-1);
    if (platform !== undefined) {
      const want = expandWord(platform, this.globalArgs(), this.df.escape);
      if (formatPlatform(parsePlatform(want)) !== formatPlatform(hostPlatform())) {
        this.fail(stage.from, `FROM --platform=${want}: this machine builds ${formatPlatform(hostPlatform())} only`);
      }
    }
    const base = this.stageByName(fromName, stage.index);
    if (base) {
      const r = this.stageResults.get(base.index)!;
      return { state: ImageState.from(r.state.config, r.state.layers), key: r.key };
    }
    if (fromName === 'scratch') return { state: ImageState.scratch(), key: cacheKey({ from: 'scratch' }) };
    const desc = await this.image(stage.from, `FROM ${fromName}`, fromName);
    const img = store.image(desc);
    const [config, layers] = await Promise.all([img.config(), img.layers()]);
    const state = ImageState.from(config, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
    return { state, key: cacheKey({ from: desc.digest }) };
  }

  private async buildStage(stage: Stage, final: boolean): Promise<{ state: ImageState; key: Digest }> {
    const started = Date.now();
    const from = await this.fromState(stage);
    this.opts.onEvent?.({ type: 'step-done', step: this.emitStep(stage, stage.from.text, false), ms: Date.now() - started });
    const layered = this.opts.layers !== false && !(this.opts.squash && final);
    const sr: StageRun = { stage, state: from.state, key: from.key, layered, args: new Map() };
    const globals = this.globalArgs();
    // ONBUILD triggers of the base image run first, as if written right after FROM; the new
    // image does not inherit them.
    const triggers = (from.state.container.OnBuild ?? []).map((t) => this.trigger(stage, t));
    if (from.state.container.OnBuild) from.state.container.OnBuild = null;
    this.total += triggers.length;
    for (const ins of [...triggers, ...stage.instructions]) {
      this.checkAbort();
      const t0 = Date.now();
      try {
        const vars = new Map([...sr.args, ...sr.state.env()]);
        if (ins.keyword === 'ARG') this.declareArgs(ins, vars, sr.args, globals);
        const prepared = await this.prepare(ins, sr, vars);
        const key = cacheKey({ parent: sr.key, instruction: ins.text, args: [...sr.args].filter(([k]) => !PROXY_ARGS.has(k)).sort(), ...prepared.key });
        if (layered && !this.opts.noCache) {
          const hit = await this.loadCached(key);
          if (hit) {
            sr.state = hit;
            sr.key = key;
            this.emitStep(stage, ins.text, true);
            continue;
          }
        }
        const step = this.emitStep(stage, ins.text, false);
        await this.execute(sr, ins, vars, step, prepared);
        sr.key = key;
        if (layered) await this.cache.put(key, (await writeImage(this.opts.store, sr.state, { format: 'oci' })).descriptor);
        this.opts.onEvent?.({ type: 'step-done', step, ms: Date.now() - t0 });
      } catch (e) {
        if (e instanceof DockerfileError || !(e instanceof TsbuildError)) throw e;
        // Name the Dockerfile line in every error an instruction raises.
        throw new DockerfileError(this.df.file, ins.line, e.message);
      }
    }
    if (sr.pending) await this.commitPending(sr);
    return { state: sr.state, key: sr.key };
  }

  /**
   * An image by name: from the store, or pulled from its registry as --pull says (missing: only
   * when the store lacks it; always: every time; never: the store only).
   */
  private async image(ins: Instruction, what: string, name: string): Promise<Descriptor> {
    const mode = this.opts.pull ?? 'missing';
    if (mode !== 'always') {
      try {
        return (await this.opts.store.resolve(name)).descriptor;
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
        if (mode === 'never') this.fail(ins, `${what}: image not known in the local store (and --pull=never)`);
      }
    }
    let ref: Reference;
    try {
      ref = parseReference(name);
    } catch {
      this.fail(ins, `${what}: image not known in the local store, and "${name}" is not a reference to pull`);
    }
    this.registryClient ??= this.opts.registry ?? new RegistryClient({ auth: authFileProvider() });
    try {
      return (await pull(this.registryClient, this.opts.store, ref)).descriptor;
    } catch (e) {
      if (e instanceof CancelledError) throw e;
      this.fail(ins, `${what}: not in the local store, and pulling it failed: ${(e as Error).message}`);
    }
  }

  /** An ONBUILD trigger as an instruction reported at the FROM line that inherited it. */
  private trigger(stage: Stage, text: string): Instruction {
    let ins: Instruction;
    try {
      ins = parseDockerfile(`FROM scratch\n${text}\n`, this.df.file).stages[0]!.instructions[0]!;
    } catch (e) {
      this.fail(stage.from, `ONBUILD trigger "${text}": ${(e as Error).message.replace(/^[^:]*:\d+: /, '')}`);
    }
    return { ...ins, line: stage.from.line };
  }

  /** A cached state, if every blob it names is still in the store. */
  private async loadCached(key: Digest): Promise<ImageState | undefined> {
    const d = await this.cache.get(key);
    if (!d) return undefined;
    try {
      const img = this.opts.store.image(d);
      const [manifest, config] = await Promise.all([img.manifest(), img.config()]);
      for (const l of manifest.layers) if (!(await this.opts.store.content.info(l.digest))) return undefined;
      return ImageState.from(config, manifest.layers);
    } catch {
      return undefined;
    }
  }

  private declareArgs(ins: Instruction, vars: Map<string, string>, args: Map<string, string>, globals: Map<string, string>): void {
    for (const w of expandWords(ins.args, vars, this.df.escape)) {
      const eq = w.indexOf('=');
      const name = eq >= 0 ? w.slice(0, eq) : w;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail(ins, `ARG name "${name}" is not a valid variable name`);
      const v = this.opts.buildArgs?.[name] ?? (eq >= 0 ? w.slice(eq + 1) : globals.get(name));
      if (v !== undefined) args.set(name, v);
    }
  }

  /** Work an instruction needs before its cache key is known: resolving and hashing COPY sources. */
  private async prepare(ins: Instruction, sr: StageRun, vars: Map<string, string>): Promise<{ key: Record<string, unknown>; copy?: CopyFiles }> {
    if (ins.keyword !== 'COPY' && ins.keyword !== 'ADD') return { key: {} };
    const op = await this.copyOp(ins, sr, vars);
    return { key: { sources: await hashSources(op.sources), dest: op.dest, uid: op.uid, gid: op.gid, mode: op.mode ?? null }, copy: op };
  }

  private async execute(sr: StageRun, ins: Instruction, vars: Map<string, string>, step: number, prepared: { copy?: CopyFiles }): Promise<void> {
    const esc = this.df.escape;
    const state = sr.state;
    const c = state.container;
    const created = this.timestamp();
    const nop = (text: string): HistoryEntry => ({ created, created_by: `/bin/sh -c #(nop) ${text}` });
    switch (ins.keyword) {
      case 'ARG':
        state.addHistory(nop(ins.text));
        return;
      case 'ENV': {
        const pairs = parseKeyValues(ins, vars, esc, this.df.file);
        for (const [k, v] of pairs) state.setEnv(k, v);
        state.addHistory(nop(`ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`));
        return;
      }
      case 'LABEL': {
        const labels = (c.Labels ??= {});
        for (const [k, v] of parseKeyValues(ins, vars, esc, this.df.file)) labels[k] = v;
        state.addHistory(nop(ins.text));
        return;
      }
      case 'MAINTAINER':
        state.config.author = expandWord(ins.args, vars, esc);
        state.addHistory(nop(ins.text));
        return;
      case 'WORKDIR': {
        const dir = expandWord(ins.args, vars, esc);
        if (dir === '') this.fail(ins, 'WORKDIR requires a path');
        const resolved = path.posix.resolve(c.WorkingDir || '/', dir);
        c.WorkingDir = resolved;
        const user = await this.user(state, vars);
        await this.layerStep(sr, step, `/bin/sh -c #(nop) WORKDIR ${resolved}`, async (mounts, dirScratch) => {
          await copyInto(mounts, dirScratch, [{ op: 'mkdir', path: resolved, uid: user.uid, gid: user.gid, mode: 0o755 }], this.opts.signal);
        }, true);
        return;
      }
      case 'CMD':
        c.Cmd = ins.json ?? [...(c.Shell ?? ['/bin/sh', '-c']), ins.args];
        state.addHistory(nop(`CMD ${JSON.stringify(c.Cmd)}`));
        return;
      case 'ENTRYPOINT':
        c.Entrypoint = ins.json ?? [...(c.Shell ?? ['/bin/sh', '-c']), ins.args];
        // An ENTRYPOINT set in a stage clears a CMD inherited from the base image.
        c.Cmd = null;
        state.addHistory(nop(`ENTRYPOINT ${JSON.stringify(c.Entrypoint)}`));
        return;
      case 'SHELL':
        if (!ins.json || ins.json.length === 0) this.fail(ins, 'SHELL requires the arguments to be in JSON form');
        c.Shell = ins.json;
        state.addHistory(nop(`SHELL ${JSON.stringify(ins.json)}`));
        return;
      case 'USER':
        c.User = expandWord(ins.args, vars, esc);
        state.addHistory(nop(`USER ${c.User}`));
        return;
      case 'EXPOSE': {
        const ports = (c.ExposedPorts ??= {});
        for (const p of expandWords(ins.args, vars, esc)) ports[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
        state.addHistory(nop(ins.text));
        return;
      }
      case 'VOLUME': {
        const vols = (c.Volumes ??= {});
        for (const v of ins.json ?? expandWords(ins.args, vars, esc)) vols[v] = {};
        state.addHistory(nop(ins.text));
        return;
      }
      case 'STOPSIGNAL':
        c.StopSignal = expandWord(ins.args, vars, esc);
        state.addHistory(nop(ins.text));
        return;
      case 'HEALTHCHECK': {
        const words = ins.json ? undefined : splitRaw(ins.args, esc);
        if (!ins.json && words![0]?.toUpperCase() === 'NONE') {
          if (words!.length > 1 || ins.flags.size > 0) this.fail(ins, 'HEALTHCHECK NONE takes no arguments or options');
          c.Healthcheck = { Test: ['NONE'] };
        } else {
          const rest = ins.args.replace(/^\s*CMD\b\s*/i, '');
          if (rest === ins.args) this.fail(ins, 'HEALTHCHECK requires CMD or NONE');
          const json = parseJsonForm(rest);
          const hc: NonNullable<typeof c.Healthcheck> = { Test: json ? ['CMD', ...json] : ['CMD-SHELL', rest] };
          for (const [flag, field] of [['interval', 'Interval'], ['timeout', 'Timeout'], ['start-period', 'StartPeriod'], ['start-interval', 'StartInterval']] as const) {
            const v = ins.flags.get(flag)?.at(-1);
            if (v !== undefined) hc[field] = parseDuration(ins, flag, v, this.df.file);
          }
          const retries = ins.flags.get('retries')?.at(-1);
          if (retries !== undefined) {
            if (!/^\d+$/.test(retries) || Number(retries) < 1) this.fail(ins, `HEALTHCHECK --retries=${retries}: want a whole number of at least 1`);
            hc.Retries = Number(retries);
          }
          for (const f of ins.flags.keys()) {
            if (!['interval', 'timeout', 'start-period', 'start-interval', 'retries'].includes(f)) this.fail(ins, `HEALTHCHECK --${f} is not a HEALTHCHECK option`);
          }
          c.Healthcheck = hc;
        }
        state.addHistory(nop(ins.text));
        return;
      }
      case 'ONBUILD': {
        const trigger = ins.args.trim();
        const kw = trigger.split(/\s+/, 1)[0]!.toUpperCase();
        if (kw === 'ONBUILD' || kw === 'FROM' || kw === 'MAINTAINER') this.fail(ins, `ONBUILD ${kw} is not allowed`);
        if (!KEYWORDS.has(kw)) this.fail(ins, `ONBUILD: unknown instruction: ${kw}`);
        (c.OnBuild ??= []).push(trigger);
        state.addHistory(nop(ins.text));
        return;
      }
      case 'RUN':
        return this.runStep(sr, ins, vars, step);
      case 'COPY':
      case 'ADD':
        await this.layerStep(sr, step, `/bin/sh -c #(nop) ${ins.keyword} ${ins.args}`, async (mounts, copyScratch) => {
          await copyInto(mounts, copyScratch, [prepared.copy!], this.opts.signal);
        });
        return;
      default:
        this.fail(ins, `${ins.keyword} is not supported by this version of tsbuild yet`);
    }
  }

  private timestamp(): string {
    const epoch = this.opts.sourceDateEpoch;
    return new Date(epoch !== undefined ? epoch * 1000 : Date.now()).toISOString();
  }

  private async user(state: ImageState, vars: Map<string, string>): Promise<{ uid: number; gid: number; additionalGids: number[] }> {
    const spec = state.container.User ? expandWord(state.container.User, vars, this.df.escape) : '';
    await this.ensureSnapshot(state);
    return resolveUser(this.opts.snapshotter, state.snapshot, spec);
  }

  private async runStep(sr: StageRun, ins: Instruction, vars: Map<string, string>, step: number): Promise<void> {
    if (ins.flags.size > 0) this.fail(ins, `RUN --${[...ins.flags.keys()][0]} is not supported by this version of tsbuild yet`);
    const c = sr.state.container;
    const argv = ins.json ?? [...(c.Shell ?? ['/bin/sh', '-c']), shellScript(ins)];
    if (argv.length === 0) this.fail(ins, 'RUN requires at least one argument');
    const env = new Map(sr.state.env());
    // Build args reach RUN's environment but are not stored in the image's Env.
    for (const [k, v] of sr.args) if (!env.has(k)) env.set(k, v);
    for (const k of PROXY_ARGS) {
      const v = this.opts.buildArgs?.[k];
      if (v !== undefined && !env.has(k)) env.set(k, v);
    }
    if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
    const user = await this.user(sr.state, vars);
    const createdBy = ins.json ? ins.json.join(' ') : `/bin/sh -c ${ins.args}`;
    const tail = new OutputTail();
    await this.layerStep(sr, step, createdBy, async (mounts, runScratch) => {
      const res = await run(
        {
          ...this.opts.runtime,
          args: argv,
          env: [...env].map(([k, v]) => `${k}=${v}`),
          cwd: c.WorkingDir || '/',
          user,
          rootfs: mounts,
          scratchDir: runScratch,
        },
        { stdin: 'ignore', stdout: tail.wrap(this.opts.stdout), stderr: tail.wrap(this.opts.stderr) },
        this.opts.signal,
      );
      const oom = res.oomKilled;
      if (oom) {
        const limit = this.opts.runtime?.resources?.memory;
        this.fail(ins, `RUN was killed: out of memory${limit !== undefined && limit > 0 ? ` (limit ${Math.round(limit / 1048576)} MiB)` : ''}`);
      }
      if (res.exitCode !== 0 || res.signal) {
        const how = res.signal ? `was killed by ${res.signal}` : `exited with status ${res.exitCode}`;
        const last = tail.lastLine();
        this.fail(ins, `RUN ${truncate(ins.args)} ${how}${last ? ` (last output: ${JSON.stringify(truncate(last, 120))})` : ''}`);
      }
    });
  }

  /**
   * The files a COPY or ADD puts into the image, staged as host paths: context files (after
   * .dockerignore), here-documents written to files, another stage's or image's files read out of
   * its snapshots (--from), ADD's unpacked archives and downloads.
   */
  private async copyOp(ins: Instruction, sr: StageRun, vars: Map<string, string>): Promise<CopyFiles> {
    const isAdd = ins.keyword === 'ADD';
    const allowed = isAdd ? ['chown', 'chmod', 'checksum', 'link', 'keep-git-dir'] : ['chown', 'chmod', 'from', 'link'];
    for (const f of ins.flags.keys()) if (!allowed.includes(f)) this.fail(ins, `${ins.keyword} --${f} is not supported${f === 'from' ? ' for ADD (use COPY --from)' : ''}`);
    const staging = path.join(this.scratch, `sources-${ins.line}-${randomBytes(3).toString('hex')}`);
    // Here-documents: `COPY <<EOF /dst`; each marker word is replaced by a file named after it.
    const heredocFiles = new Map<string, string>();
    let rawArgs = ins.args;
    for (const h of ins.heredocs ?? []) {
      const file = path.join(staging, 'heredoc', h.name);
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await fsp.writeFile(file, h.expand ? expandHeredoc(h.content, vars) : h.content, { mode: 0o644 });
      await fsp.chmod(file, 0o644);
      heredocFiles.set(h.name, file);
      rawArgs = rawArgs.replace(new RegExp(`<<-?(["']?)${h.name}\\1`), `__tsbuild_heredoc_${h.name}`);
    }
    const words = ins.json ?? expandWords(rawArgs, vars, this.df.escape);
    if (words.length < 2) this.fail(ins, `${ins.keyword} requires at least two arguments: ${ins.keyword} <src>... <dest>`);
    const srcs = words.slice(0, -1);
    let dest = words.at(-1)!;
    const wd = sr.state.container.WorkingDir || '/';
    const trailing = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
    dest = path.posix.resolve(wd, dest) + (trailing && dest !== '/' ? '/' : '');
    const from = ins.flags.get('from')?.at(-1);
    const hostPaths: string[] = [];
    const contextSources: string[] = [];
    for (const src of srcs) {
      const heredoc = /^__tsbuild_heredoc_(.+)$/.exec(src);
      if (heredoc) hostPaths.push(heredocFiles.get(heredoc[1]!)!);
      else if (isAdd && /^https?:\/\//.test(src)) {
        hostPaths.push(await download(src, path.join(staging, `url-${hostPaths.length}`), ins.flags.get('checksum')?.at(-1), this.opts.signal));
      } else if (from === undefined) contextSources.push(src);
      else hostPaths.push(...(await this.fromSources(ins, sr, expandWord(from, vars, this.df.escape), src, path.join(staging, `from-${hostPaths.length}`))));
    }
    if (contextSources.length > 0) {
      for (const p of await (await this.context()).resolve(contextSources)) {
        if (isAdd && (await isArchive(p))) {
          // ADD unpacks a local archive into the destination directory.
          const dir = path.join(staging, `archive-${hostPaths.length}`);
          await extractArchive(p, dir);
          hostPaths.push(dir);
          if (!dest.endsWith('/')) dest += '/';
        } else hostPaths.push(p);
      }
    }
    if (hostPaths.length > 1 && !dest.endsWith('/')) {
      this.fail(ins, `When using ${ins.keyword} with more than one source file, the destination must be a directory and end with a /`);
    }
    let uid = 0;
    let gid = 0;
    const chown = ins.flags.get('chown')?.at(-1);
    if (chown !== undefined) {
      await this.ensureSnapshot(sr.state);
      const u = await resolveUser(this.opts.snapshotter, sr.state.snapshot, expandWord(chown, vars, this.df.escape), true);
      uid = u.uid;
      gid = u.gid;
    }
    let mode: number | undefined;
    const chmod = ins.flags.get('chmod')?.at(-1);
    if (chmod !== undefined) {
      if (!/^[0-7]{3,4}$/.test(chmod)) this.fail(ins, `${ins.keyword} --chmod=${chmod}: want an octal mode such as 755`);
      mode = parseInt(chmod, 8);
    }
    return { op: 'copy', sources: hostPaths, dest, uid, gid, ...(mode !== undefined ? { mode } : {}) };
  }

  /** COPY --from: sources out of an earlier stage (name or index) or an image, read through a MergedView. */
  private async fromSources(ins: Instruction, sr: StageRun, from: string, src: string, staging: string): Promise<string[]> {
    let state: ImageState;
    const stage = this.stageByName(from, sr.stage.index);
    if (stage) {
      const r = this.stageResults.get(stage.index);
      if (!r) this.fail(ins, `COPY --from=${from}: stage ${from} has not been built`);
      state = r.state;
    } else {
      if (/^\d+$/.test(from)) this.fail(ins, `COPY --from=${from}: no stage ${from} before this one`);
      const desc = await this.image(ins, `COPY --from=${from}`, from);
      const img = this.opts.store.image(desc);
      const [config, layers] = await Promise.all([img.config(), img.layers()]);
      state = ImageState.from(config, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
    }
    await this.ensureSnapshot(state);
    const view = await MergedView.open(this.opts.snapshotter, state.snapshot);
    const matches = /[*?[]/.test(src) ? await view.glob(src) : (await view.stat(src)) ? [src] : [];
    if (matches.length === 0) this.fail(ins, `COPY --from=${from} ${src}: no such file or directory in ${from}`);
    const out: string[] = [];
    for (const [i, m] of matches.entries()) {
      const target = path.join(staging, String(i), path.posix.basename(m) || 'root');
      await fsp.mkdir(path.dirname(target), { recursive: true });
      await view.materialize(m, target);
      out.push(target);
    }
    return out;
  }

  private context(): Promise<BuildContext> {
    this.contextP ??= BuildContext.open(this.opts.context, this.opts.dockerfile, this.scratch);
    return this.contextP;
  }

  /**
   * The committed snapshot of a state's layers, unpacked again from the store's blobs when it is
   * missing (a cache hit after a prune, a base image never unpacked).
   */
  private async ensureSnapshot(state: ImageState): Promise<void> {
    const name = state.snapshot;
    if (name === undefined || (await this.opts.snapshotter.exists(name))) return;
    const diffIds = state.config.rootfs.diff_ids;
    const content = this.opts.store.content;
    await unpack(this.opts.snapshotter, state.layers.map((l, i) => ({ diffID: diffIds[i]!, open: () => content.read(l.digest) })));
  }

  /**
   * Runs `change` against a fresh active snapshot on top of the image, then turns the snapshot's
   * changes into a layer: diff → compressed blob (+ diffID) → commit the snapshot under the new
   * chainID. With `dropIfEmpty`, a change that touched nothing adds no layer, only a history
   * entry. With layers off, every change of the stage goes into one pending snapshot instead.
   */
  private async layerStep(sr: StageRun, step: number, createdBy: string, change: (mounts: Mounts, scratch: string) => Promise<void>, dropIfEmpty = false): Promise<void> {
    this.checkAbort();
    const s = this.opts.snapshotter;
    const state = sr.state;
    const stepScratch = path.join(this.scratch, `step-${step}`);
    if (!sr.layered) {
      if (!sr.pending) {
        await this.ensureSnapshot(state);
        const key = `build-${this.id}-${step}`;
        const mounts = await s.prepare(key, state.snapshot);
        this.active.add(key);
        sr.pending = { key, mounts, historyIndex: -1 };
      }
      await change(sr.pending.mounts, stepScratch);
      state.addHistory({ created: this.timestamp(), created_by: createdBy });
      sr.pending.historyIndex = state.config.history!.length - 1;
      return;
    }
    await this.ensureSnapshot(state);
    const key = `build-${this.id}-${step}`;
    const mounts = await s.prepare(key, state.snapshot);
    this.active.add(key);
    await change(mounts, stepScratch);
    if (dropIfEmpty && (await fsp.readdir(await s.fsDir(key))).length === 0) {
      await s.remove(key);
      this.active.delete(key);
      state.addHistory({ created: this.timestamp(), created_by: createdBy });
      return;
    }
    await this.commitLayer(state, key, step, { created: this.timestamp(), created_by: createdBy });
  }

  /** With layers off: the stage's one layer, taking the history entry of its last change. */
  private async commitPending(sr: StageRun): Promise<void> {
    const p = sr.pending!;
    sr.pending = undefined;
    const history = sr.state.config.history!;
    const entry = history.splice(p.historyIndex, 1)[0]!;
    delete entry.empty_layer;
    await this.commitLayer(sr.state, p.key, this.step, entry, p.historyIndex);
  }

  private async commitLayer(state: ImageState, key: string, step: number, history: HistoryEntry, historyIndex?: number): Promise<void> {
    const s = this.opts.snapshotter;
    const compression = this.opts.compression?.format ?? 'gzip';
    const layer = await ingestLayer(this.opts.store.content, diff(s, key, this.epochOpt()), {
      compression,
      ...(this.opts.compression?.level !== undefined ? { level: this.opts.compression.level } : {}),
    });
    const desc: Descriptor = { mediaType: layerMediaType('oci', compression), digest: layer.digest, size: layer.size };
    state.addLayer(desc, layer.diffID, history, historyIndex);
    const name = chainId(state.config.rootfs.diff_ids)!;
    if (await s.exists(name)) {
      await s.remove(key); // the same layer on the same parent was committed before: reuse it
    } else {
      try {
        await s.commit(name, key);
      } catch (e) {
        if ((e as TsbuildError).code !== 'ALREADY_EXISTS') throw e;
        await s.remove(key);
      }
    }
    this.active.delete(key);
    this.opts.onEvent?.({ type: 'layer', step, digest: layer.digest, size: layer.size });
  }

  private epochOpt(): { sourceDateEpoch?: number } {
    return this.opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: this.opts.sourceDateEpoch } : {};
  }
}

/**
 * Variables in an unquoted here-document for COPY/ADD: `$VAR` and `${VAR…}` forms only, as the
 * body is file content, not shell words (quotes and backslashes stay as written).
 */
function expandHeredoc(content: string, vars: Map<string, string>): string {
  return content.replace(/\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)/g, (m) => expandWord(m, vars, '\u0000'));
}

/**
 * The script a shell-form RUN hands to the shell. With here-documents: `RUN <<EOF` alone runs the
 * body as the script (a `#!` body is written to a file and executed, as BuildKit does); otherwise
 * the shell gets the line and the bodies and does the here-document itself.
 */
function shellScript(ins: Instruction): string {
  const docs = ins.heredocs ?? [];
  if (docs.length === 0) return ins.args;
  if (docs.length === 1 && /^<<-?(["']?)[A-Za-z_][A-Za-z0-9_]*\1$/.test(ins.args.trim())) {
    const body = docs[0]!.content;
    if (!body.startsWith('#!')) return body;
    const marker = `TSBUILD_HEREDOC_${randomBytes(4).toString('hex')}`;
    return `f=$(mktemp) && cat > "$f" <<'${marker}' && chmod +x "$f" && "$f"; rc=$?; rm -f "$f"; exit $rc\n${body}${marker}\n`;
  }
  return `${ins.args}\n${docs.map((d) => `${d.content}${d.name}\n`).join('')}`;
}

/** Go durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`), in nanoseconds. */
function parseDuration(ins: Instruction, flag: string, v: string, file: string): number {
  const units: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    total += Number(m[1]) * units[m[2]!]!;
    end = re.lastIndex;
  }
  if (v === '' || end !== v.length) throw new DockerfileError(file, ins.line, `HEALTHCHECK --${flag}=${v}: want a duration such as 30s or 1m30s`);
  if (total !== 0 && total < 1e6) throw new DockerfileError(file, ins.line, `HEALTHCHECK --${flag}=${v}: must be at least 1ms`);
  return Math.round(total);
}

/** Passes a RUN's output on and keeps its end, so that a failure can quote the last line. */
class OutputTail {
  private buf = '';

  wrap(out: Writable | undefined): Writable | 'inherit' {
    if (!out) return 'inherit';
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.buf = (this.buf + chunk.toString('utf8')).slice(-4096);
        out.write(chunk, cb);
      },
    });
  }

  lastLine(): string | undefined {
    return this.buf.split('\n').map((l) => l.trim()).filter((l) => l !== '').at(-1);
  }
}

/** The platform build args docker predefines in the global scope. */
function platformArgs(): Map<string, string> {
  const p = hostPlatform();
  const m = new Map<string, string>();
  for (const prefix of ['TARGET', 'BUILD']) {
    m.set(`${prefix}PLATFORM`, formatPlatform(p));
    m.set(`${prefix}OS`, p.os);
    m.set(`${prefix}ARCH`, p.architecture);
    m.set(`${prefix}VARIANT`, p.variant ?? '');
  }
  return m;
}

/** ENV and LABEL arguments: `k=v k2="v 2"` pairs, or the legacy `ENV key value with spaces`. */
function parseKeyValues(ins: Instruction, vars: Map<string, string>, esc: string, file: string): [string, string][] {
  const words = splitRaw(ins.args, esc);
  if (words.length === 0) throw new DockerfileError(file, ins.line, `${ins.keyword} requires at least one argument`);
  if (!words[0]!.includes('=')) {
    if (ins.keyword === 'LABEL' || words.length < 2) throw new DockerfileError(file, ins.line, `${ins.keyword} must have two arguments`);
    const rest = ins.args.trim().slice(words[0]!.length).trim();
    return [[expandWord(words[0]!, vars, esc), expandWord(rest, vars, esc)]];
  }
  const out: [string, string][] = [];
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new DockerfileError(file, ins.line, `${ins.keyword} names can not be blank, or "${w}" is missing "="`);
    out.push([expandWord(w.slice(0, eq), vars, esc), expandWord(w.slice(eq + 1), vars, esc)]);
  }
  return out;
}

function truncate(s: string, n = 60): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

interface WrittenImage {
  descriptor: Descriptor;
  configDigest: Digest;
}

/**
 * Writes the config and manifest of a state. The config's `created` is the time of its last
 * history entry, so a state rebuilt entirely from the cache is byte-identical and keeps its ID.
 */
export async function writeImage(store: Store, state: ImageState, opts: { format: 'oci' | 'docker'; annotations?: Record<string, string> }): Promise<WrittenImage> {
  const config: ImageConfig = structuredClone(state.config);
  const last = config.history?.at(-1)?.created;
  if (last !== undefined) config.created = last;
  const docker = opts.format === 'docker';
  const configDesc = await store.putJSON(config, docker ? MediaType.DockerConfig : MediaType.OciConfig);
  const layers = docker
    ? state.layers.map((l) => {
        if (layerCompression(l.mediaType) !== 'gzip') throw new InvalidArgumentError(`--format docker needs gzip layers; ${l.digest} is ${l.mediaType}`);
        return { ...l, mediaType: MediaType.DockerLayerGzip };
      })
    : state.layers;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: docker ? MediaType.DockerManifest : MediaType.OciManifest,
    config: configDesc,
    layers,
    ...(opts.annotations && !docker ? { annotations: opts.annotations } : {}),
  };
  const descriptor = await store.putJSON(manifest, manifest.mediaType!);
  return { descriptor, configDigest: configDesc.digest };
}
