import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import {
  type Descriptor,
  type Digest,
  type HistoryEntry,
  CancelledError,
  InvalidArgumentError,
  NotFoundError,
  TsbuildError,
  type Platform,
  formatPlatform,
  formatReference,
  hostPlatform,
  normalisePlatform,
  parsePlatform,
  samePlatformAs,
  parseReference,
  shortId,
  type Reference,
  unescapeGlob,
  isoTime,
} from '@tsbuild/oci';
import { type CompressImageOptions, type Store, compressImage, configPlatform, writeImage } from '@tsbuild/store';
import {
  BuildContext,
  WorkingContainer,
  imageSnapshot,
  registryFailure,
  storedOrPulled,
  type CopyFiles,
  type CopySpec,
  DEFAULT_PATH,
  ImageState,
  type RunDefaults,
  type RunMount,
  cacheMountDirName,
  readContextFile,
  resolveCopy,
  resolveUser,
} from '@tsbuild/container';
import { MergedView, type OverlaySnapshotter } from '@tsbuild/snapshotter';
import type { ExtraMount, RunUsage } from '@tsbuild/runtime';
import { StepLog } from './step-log.js';
import { fdPath, randomHex, withFd } from '@tsbuild/linux';
import { BuildCache, type StepInputs, cacheKey, hashSources, shortKey } from './cache.js';
import { cacheRepository, exportCacheEntries, importCacheEntry } from './registry-cache.js';
import { HANDLERS, type StepScope, checkDockerfile, checkInstruction, truncate } from './instructions/index.js';
import type { RegistryClient } from '@tsbuild/registry-client';
import {
  DockerfileError,
  MAX_DOCKERFILE_SIZE,
  type Instruction,
  type ParsedDockerfile,
  type Stage,
  atLine,
  parseDockerfile,
  withContext,
} from './dockerfile.js';
import type { BuildRecord } from './build-records.js';
import { BuildChecks } from './lint/reporter.js';
import { basePlatform, undefinedVars } from './lint/rules.js';
import { runStaticChecks } from './lint/static-checks.js';
import { type StepEntry, keepFailedRun, writeSteps } from './debug-state.js';
import { InstructionVars, UnsetVariableError, expandArgWords, expandWord, expandWords, splitRaw } from './expand.js';


export type BuildEvent =
  | { type: 'step'; step: number; total: number; stage: number; text: string; cached: boolean; line?: number }
  | { type: 'step-done'; step: number; ms: number }
  | { type: 'layer'; step: number; digest: Digest; size: number }
  | { type: 'stage-done'; stage: number; name?: string }
  | { type: 'done'; imageId: Digest; manifest: Descriptor; names: string[] }
  /** Something the build worked around (a --cache-from registry that failed): the CLI prints it. */
  | { type: 'warning'; message: string }
  /** After the build, with --cache-to: how many step states went to the cache repository. */
  | { type: 'cache-exported'; repository: string; entries: number }
  /**
   * Before a step runs or is taken from the cache (issue 19, --explain-cache): a hit says which
   * entry and where it came from; a miss says the first input that differs, in one line.
   */
  | { type: 'cache'; step: number; hit: boolean; source?: 'local' | 'registry'; reason: string }
  /** After a RUN step (issue 19): what it cost, from its cgroup where the host has one. */
  | { type: 'step-usage'; step: number; wallMs: number; cpuMs?: number; peakMemoryBytes?: number; writtenBytes?: number }
  /** A build check's finding (issue 19, BuildKit's rule names): `line` is the Dockerfile line. */
  | { type: 'check'; rule: string; line: number; message: string; error: boolean };

export interface BuildOptions {
  store: Store;
  /**
   * Where this build keeps what outlives it (step logs, a failed step's state: issue 19); the
   * CLI makes one per `tsbuild build` (BuildRecords.create). Absent: nothing is kept.
   */
  record?: BuildRecord;
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
  /**
   * Store committed layers as plain tars (default true), as buildah does by default: a commit
   * then writes and hashes the tar only, and compression is paid when the image leaves the
   * machine (push and --cache-to compress, see compressImage in @tsbuild/store). false
   * compresses each layer at commit as `compression` says. The image ID (config digest) is the
   * same either way: the config lists diffIDs, the digests of the uncompressed tars.
   */
  disableCompression?: boolean;
  /**
   * Layer compression (default gzip at its default level): at commit when `disableCompression`
   * is false, and for the layers --cache-to pushes.
   */
  compression?: { format?: 'gzip' | 'zstd'; level?: number };
  /** When FROM and COPY --from pull from a registry: only images the store lacks (default), always, or never. */
  pull?: 'missing' | 'always' | 'never';
  /**
   * The client pulls go through, or a function making it when the first pull happens (default:
   * one with podman's and docker's stored credentials). The registry client (and its HTTP
   * stack) is loaded only when a build pulls.
   */
  registry?: RegistryClient | (() => Promise<RegistryClient>);
  /**
   * Secrets for `RUN --mount=type=secret,id=ID`: read from a file or an environment variable of
   * this process. They are mounted for that RUN only: never in a layer, the history or the cache key.
   */
  secrets?: Record<string, { src: string } | { env: string }>;
  /**
   * A repository (no tag) to push the build cache to after a successful build: the state after
   * every cached step this build produced or used, tagged with its cache key's hex.
   */
  cacheTo?: string;
  /**
   * Repositories (as `cacheTo` writes them) to try, in order, when the local cache misses a step.
   * A missing tag is a miss; any other registry failure is one `warning` event, after which that
   * repository is not asked again during this build.
   */
  cacheFrom?: string[];
  /**
   * The platform to build for (default: this machine's): FROM takes that platform's image from a
   * manifest list (or pulls it), the TARGET* ARGs say it, and the image's config names it. A
   * `FROM --platform=…` stage is built for the platform it names instead.
   */
  platform?: Platform;
  /**
   * Steps in progress in the other platforms' builds of one buildPlatforms: a step whose cache
   * key another build is computing waits for it and takes its cache entry, so a stage that
   * several platforms build for the same platform (`FROM --platform=$BUILDPLATFORM`) runs once.
   */
  inflight?: InflightSteps;
  /**
   * Store the image without a name or an untagged record, and ignore `tags`: the caller names it
   * (buildPlatforms puts each platform's image in a list, which keeps it).
   */
  unnamed?: boolean;
}

/** Cache keys being computed by one of several concurrent builds, to the promise of their end. */
export type InflightSteps = Map<Digest, Promise<void>>;

// The package is CommonJS (module.exports = factory) while its typings declare a default export.

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
  const { opts, parsed } = await loadDockerfile(options);
  return buildParsed(opts, parsed);
}

/**
 * The options with their paths made absolute (from the current directory, once, here) and the
 * Dockerfile read, parsed and checked: every instruction is checked before anything runs, so a
 * mistake on line 40 fails before line 3 runs.
 */
export async function loadDockerfile(options: BuildOptions): Promise<{ opts: BuildOptions; parsed: ParsedDockerfile }> {
  const opts: BuildOptions = {
    ...options,
    context: path.resolve(options.context),
    ...(options.dockerfile !== undefined ? { dockerfile: path.resolve(options.dockerfile) } : {}),
  };
  checkEpoch(opts.sourceDateEpoch);
  const dockerfilePath = opts.dockerfileText === undefined ? (opts.dockerfile ?? path.join(opts.context, 'Dockerfile')) : opts.dockerfile;
  const text = opts.dockerfileText ?? (await readDockerfile(dockerfilePath!, opts.context));
  const parsed = parseDockerfile(text, dockerfilePath ? path.basename(dockerfilePath) : 'Dockerfile');
  checkDockerfile(parsed);
  return { opts, parsed };
}

/** build() of a Dockerfile loadDockerfile read: buildPlatforms reads it once for every platform. */
export async function buildParsed(opts: BuildOptions, parsed: ParsedDockerfile): Promise<BuildResult> {
  const { store } = opts;
  const tags = opts.unnamed ? [] : (opts.tags ?? []).map((t) => formatReference(parseReference(t)));
  if (opts.format === 'docker' && opts.disableCompression === false && opts.compression?.format === 'zstd') {
    throw new InvalidArgumentError('--format docker needs gzip layers: Docker schema 2 has no zstd layer type');
  }
  const cacheTo = opts.cacheTo !== undefined ? cacheRepository(opts.cacheTo, '--cache-to') : undefined;
  const cacheFrom = (opts.cacheFrom ?? []).map((r) => cacheRepository(r, '--cache-from'));
  // Build checks (issue 19): the Dockerfile's rules once, before the first step; with
  // `# check=error=true` a finding stops the build here, as BuildKit's linter does.
  const checks = new BuildChecks(parsed, opts.onEvent);
  await runStaticChecks(opts, parsed, checks);
  checks.failIfFound();
  return store.withLock('shared', async () => {
    const scratch = path.join(store.root, 'tmp', `build-${randomHex(6)}`);
    await fsp.mkdir(scratch, { recursive: true });
    const b = new Builder(opts, parsed, scratch, cacheFrom, checks);
    try {
      const final = await b.run();
      if (opts.labels) Object.assign((final.container.Labels ??= {}), opts.labels);
      const manifest = await writeImage(store, final.config, final.layers, { format: opts.format ?? 'oci', ...(opts.annotations ? { annotations: opts.annotations } : {}) });
      // Compressing at commit: layers that came plain from the cache (or a plain base image) are
      // compressed too, so the whole image is stored compressed. The config, and so the ID, stays.
      if (opts.disableCompression === false) manifest.descriptor = await compressImage(store, manifest.descriptor, layerCompressionOptions(opts));
      for (const t of tags) await store.setName(t, manifest.descriptor);
      if (tags.length === 0 && !opts.unnamed) await store.addImage(manifest.descriptor);
      const result = { imageId: manifest.configDigest, manifest: manifest.descriptor, names: tags };
      if (cacheTo) await b.exportCache(cacheTo, shortId(manifest.configDigest));
      opts.onEvent?.({ type: 'done', ...result });
      return result;
    } finally {
      await b.cleanup();
      await fsp.rm(scratch, { recursive: true, force: true });
    }
  });
}

/** The base images of a build (see Builder.baseImages), with the global ARGs expanded. */
export function baseImages(opts: BuildOptions, parsed: ParsedDockerfile): string[] {
  return new Builder(opts, parsed, '').baseImages();
}

/**
 * The Dockerfile's text, opened inside the context when it lies there (see readContextFile), read
 * up to one byte past MAX_DOCKERFILE_SIZE whatever the file is (a 10 GB file, /dev/zero):
 * parseDockerfile then refuses it, naming the line.
 */
async function readDockerfile(p: string, context: string): Promise<string> {
  try {
    const buf = await readContextFile(context, p, MAX_DOCKERFILE_SIZE + 1);
    if (buf === undefined) throw Object.assign(new Error(p), { code: 'ENOENT' });
    return buf.toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`Dockerfile ${p}: no such file`);
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw new InvalidArgumentError(`Dockerfile ${p}: is a directory`);
    throw withContext(e, `Dockerfile ${p}`);
  }
}

/**
 * The most seconds `sourceDateEpoch` may be either side of 1970: a JavaScript Date spans ±8.64e15
 * ms (ECMA-262 §21.4.1.22), and a time outside it has no ISO form for `created`.
 */
export const MAX_SOURCE_DATE_EPOCH = 8.64e12;

function checkEpoch(epoch: number | undefined): void {
  if (epoch === undefined) return;
  if (!Number.isSafeInteger(epoch) || Math.abs(epoch) > MAX_SOURCE_DATE_EPOCH) {
    throw new InvalidArgumentError(`source date epoch ${epoch}: want whole seconds between -${MAX_SOURCE_DATE_EPOCH} and ${MAX_SOURCE_DATE_EPOCH}`);
  }
}

/**
 * The largest image config a step may leave: 8 MiB. Each instruction's expansions are bounded
 * (MAX_EXPANSION), but ENV and LABEL add up across instructions, and every step serialises the
 * whole config again (writeImage). Real configs, long histories included, stay under a few
 * hundred KB.
 */
const MAX_CONFIG_SIZE = 8 << 20;


/** Build args that docker passes to RUN without an ARG declaration, and keeps out of the cache key. */
const PROXY_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

/** A built stage: its final state, its cache key and where its chain first missed the cache. */
interface StageResult {
  state: ImageState;
  key: Digest;
  diverged?: number;
}

/** Per-stage build state besides the image itself. */
interface StageRun {
  stage: Stage;
  /** The stage's working container: the image so far (its `state`) and the step's changes. */
  wc: WorkingContainer;
  /** Cache key of the state so far. */
  key: Digest;
  /** Whether each instruction becomes its own layer (and is cached). */
  layered: boolean;
  /** With layers off: where the history entry of the stage's last change is (its one layer takes it). */
  pendingHistory?: number;
  args: Map<string, string>;
  /** Whether this stage set CMD itself (an ENTRYPOINT then keeps it). */
  cmdSet?: boolean;
  /** The platform the stage is built for, and whether it was asked for (images must then be that platform's). */
  platform: { platform: Platform; explicit: boolean };
  /** The step of this build (in this stage or the stage it is FROM) whose result first differed from the cache: --explain-cache's "parent changed at step N". */
  diverged?: number;
}

class Builder {
  /** Every stage's working container, so that a failed build leaves no active snapshot behind. */
  private readonly containers = new Set<WorkingContainer>();
  private contextP?: Promise<BuildContext>;
  private step = 0;
  private total = 0;
  private readonly stageResults = new Map<number, StageResult>();
  private readonly id = randomHex(6);
  private readonly cache: BuildCache;
  private registryClient?: RegistryClient;
  /** Every cached step state this build produced or used, by cache key, in build order: what --cache-to pushes. */
  private readonly stepStates = new Map<Digest, Descriptor>();
  /** Cache entries that came from a --cache-from repository, by key: not pushed back there. */
  private readonly importedFrom = new Map<Digest, string>();
  private globals?: Map<string, string>;
  /** With a record: each step as --from-step finds its result (issue 19). */
  private readonly steps: StepEntry[] = [];

  constructor(
    private readonly opts: BuildOptions,
    private readonly df: ParsedDockerfile,
    private readonly scratch: string,
    /** --cache-from repositories still worth asking (one that failed is dropped). */
    private readonly cacheFrom: Reference[] = [],
    /** Where the checks that need the stage's base image report (UndefinedVar, InvalidBaseImagePlatform). */
    private readonly checks?: BuildChecks,
  ) {
    this.cache = new BuildCache(path.join(opts.store.root, 'cache'));
  }

  /**
   * The images the target's stages start from for the target platform (not scratch, not another
   * stage, not a stage whose FROM --platform names its own platform): what --all-platforms
   * intersects the platforms of, as buildah's platformsForBaseImages does.
   */
  baseImages(): string[] {
    const out = new Set<string>();
    for (const stage of this.neededStages(this.targetStage())) {
      if (stage.from.flags.has('platform')) continue;
      const name = this.fromImage(stage);
      if (name !== 'scratch' && !this.stageByName(name, stage.index)) out.add(name);
    }
    return [...out];
  }

  /** The registry client, made (and the registry-client package loaded) on first use. */
  private async client(): Promise<RegistryClient> {
    if (!this.registryClient) {
      const given = this.opts.registry;
      if (typeof given === 'object') this.registryClient = given;
      else if (typeof given === 'function') this.registryClient = await given();
      else {
        const rc = await import('@tsbuild/registry-client');
        this.registryClient = new rc.RegistryClient({ auth: rc.authFileProvider() });
      }
    }
    return this.registryClient;
  }

  /**
   * --cache-to: pushes every step state of this build to `repo`. The image is already stored
   * and named when this runs, so a failure says so: the build's result is kept.
   */
  async exportCache(repo: Reference, imageId: string): Promise<void> {
    const name = formatReference(repo);
    const entries = [...this.stepStates].filter(([key]) => this.importedFrom.get(key) !== name);
    try {
      const n = await exportCacheEntries(await this.client(), this.opts.store, repo, entries, layerCompressionOptions(this.opts));
      this.opts.onEvent?.({ type: 'cache-exported', repository: name, entries: n });
    } catch (e) {
      throw registryFailure(e, `image ${imageId} was built, but pushing its cache to ${name} failed: ${(e as Error).message}`);
    }
  }

  /**
   * Builds the target and the stages it needs. A stage starts as soon as the stages it uses
   * (FROM, COPY --from) are done, so independent stages build in parallel.
   */
  async run(): Promise<ImageState> {
    const target = this.targetStage();
    const needed = this.neededStages(target);
    this.total = needed.reduce((n, s) => n + 1 + s.instructions.length, 0);
    const started = new Map<number, Promise<StageResult>>();
    const start = (stage: Stage): Promise<StageResult> => {
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
    if (this.registryClient && typeof this.opts.registry !== 'object') await this.registryClient.close();
    if (this.opts.record) await writeSteps(this.opts.record, this.steps);
    for (const wc of this.containers) await wc.discard();
    this.containers.clear();
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
      const froms = ins.keyword === 'COPY' ? (ins.flags.get('from') ?? []).slice(-1) : [];
      if (ins.keyword === 'RUN') for (const m of ins.flags.get('mount') ?? []) froms.push(...[.../(?:^|,)from=([^,]+)/.exec(m) ?? []].slice(1));
      for (const from of froms) {
        let name: string;
        try {
          name = expandWord(from, new InstructionVars(this.globalArgs()), this.df.escape);
        } catch (e) {
          throw this.located(ins, e);
        }
        const dep = this.stageByName(name, s.index);
        if (dep && !deps.includes(dep)) deps.push(dep);
      }
    }
    return deps;
  }

  private stageByName(name: string, before: number): Stage | undefined {
    const n = name.toLowerCase();
    return this.df.stages.find((s) => s.index < before && (s.name === n || String(s.index) === n));
  }

  /**
   * Global ARGs (before the first FROM), with the platform ARGs docker predefines there; worked
   * out once. Callers must not change the map.
   */
  private globalArgs(): Map<string, string> {
    this.globals ??= globalArgValues(this.df, this.opts.buildArgs, this.target(), (ins, e) => {
      throw this.located(ins, e);
    });
    return this.globals;
  }

  /**
   * The image (or stage) a stage's FROM names: its first word, expanded with the global ARGs.
   * Only that word: `FROM ${UNSET} AS x` must not take `AS` for the image.
   */
  private fromImage(stage: Stage): string {
    const ins = stage.from;
    const raw = splitRaw(ins.args, this.df.escape)[0] ?? '';
    let name: string;
    try {
      name = expandWord(raw, new InstructionVars(this.globalArgs()), this.df.escape);
    } catch (e) {
      throw this.located(ins, e, `FROM ${truncate(raw)}`);
    }
    // docker: "base name (${NOPE}) should not be blank"
    if (name === '') this.fail(ins, `FROM ${truncate(raw)}: the image name is empty`);
    return name;
  }

  /**
   * An error raised while working on `ins`, as the user sees it: `Dockerfile:LINE: …` once, the
   * error's kind kept. `${VAR:?}` errors point at the substitution's column. Errors that are not
   * tsbuild's own (a system error such as ENOSPC) also name the instruction, as their message
   * says nothing of what was being done.
   */
  private located(ins: Instruction, e: unknown, what?: string): unknown {
    if (e instanceof UnsetVariableError) return DockerfileError.at(this.df.file, ins, e.fragment, `${e.message} (in ${e.fragment})`);
    return atLine(this.df.file, ins.line, e, what ?? (e instanceof TsbuildError ? undefined : truncate(ins.text)));
  }

  private fail(ins: Instruction, message: string): never {
    throw new DockerfileError(this.df.file, ins.line, message);
  }

  /** Fails at the place `needle` (a flag, a word) appears in the instruction: `FILE:LINE:COLUMN:`. */
  private failAt(ins: Instruction, needle: string, message: string): never {
    throw DockerfileError.at(this.df.file, ins, needle, message);
  }

  private emitStep(stage: Stage, text: string, cached: boolean, line?: number): number {
    this.step++;
    if (this.opts.record) this.steps.push({ step: this.step, stage: stage.index, text });
    this.opts.onEvent?.({ type: 'step', step: this.step, total: this.total, stage: stage.index, text, cached, ...(line !== undefined ? { line } : {}) });
    return this.step;
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new CancelledError('build cancelled');
  }

  /** The platform this build makes images for: `platform`, or this machine's. */
  private target(): Platform {
    return this.opts.platform ?? hostPlatform();
  }

  /**
   * The platform a stage is built for: its `FROM --platform=…` (expanded with the global ARGs,
   * so `$BUILDPLATFORM` makes a stage that runs natively whatever the target), else the target.
   * Asked for explicitly (either way), FROM and `--from` images must be that platform's.
   */
  private stagePlatform(stage: Stage): { platform: Platform; explicit: boolean } {
    const raw = stage.from.flags.get('platform')?.at(-1);
    if (raw === undefined) return { platform: this.target(), explicit: this.opts.platform !== undefined };
    let want: string;
    try {
      want = expandWord(raw, new InstructionVars(this.globalArgs()), this.df.escape);
    } catch (e) {
      throw this.located(stage.from, e);
    }
    try {
      return { platform: parsePlatform(want), explicit: true };
    } catch (e) {
      this.failAt(stage.from, '--platform', `FROM --platform=${want}: ${(e as Error).message}`);
    }
  }

  private async fromState(stage: Stage, platform: { platform: Platform; explicit: boolean }): Promise<StageResult> {
    const { store } = this.opts;
    const fromName = this.fromImage(stage);
    const base = this.stageByName(fromName, stage.index);
    if (base) {
      const r = this.stageResults.get(base.index)!;
      return { state: ImageState.from(r.state.config, r.state.layers), key: r.key, ...(r.diverged !== undefined ? { diverged: r.diverged } : {}) };
    }
    // The platform is part of the key a stage starts from: `FROM scratch` for two platforms is
    // two images, and an image's digest says its platform only when it came from a list.
    const p = formatPlatform(platform.platform);
    if (fromName === 'scratch') return { state: withPlatform(ImageState.scratch(), platform.platform), key: cacheKey({ from: 'scratch', platform: p }) };
    const desc = await this.image(stage.from, `FROM ${fromName}`, fromName, platform.explicit ? platform.platform : undefined);
    const img = store.image(desc);
    const [config, layers] = await Promise.all([img.config(), img.layers()]);
    const state = ImageState.from(config, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
    if (this.checks?.enabled) {
      this.checks.report([basePlatform(stage.from, fromName, platform.platform, config)]);
      this.checks.failIfFound();
    }
    return { state: platform.explicit ? withPlatform(state, platform.platform) : state, key: cacheKey({ from: desc.digest, platform: p }) };
  }

  private async buildStage(stage: Stage, final: boolean): Promise<StageResult> {
    const started = Date.now();
    let from: StageResult;
    const platform = this.stagePlatform(stage);
    try {
      from = await this.fromState(stage, platform);
    } catch (e) {
      throw this.located(stage.from, e);
    }
    // Counted outside the event: `onEvent?.(…)` skips evaluating its argument when there is no listener.
    const fromStep = this.emitStep(stage, stage.from.text, false, stage.from.line);
    this.opts.onEvent?.({ type: 'step-done', step: fromStep, ms: Date.now() - started });
    const layered = this.opts.layers !== false && !(this.opts.squash && final);
    // Every image gets a PATH, as docker and buildah give one: a base without it (scratch, an
    // imported rootfs) gets the default, first in Env.
    if (!from.state.env().has('PATH')) from.state.setEnv('PATH', DEFAULT_PATH);
    if (this.checks?.enabled) {
      this.checks.report(undefinedVars(this.df, stage, from.state.env().keys()));
      this.checks.failIfFound();
    }
    if (this.opts.record) this.stepDone(fromStep, from.key, from.state);
    const wc = WorkingContainer.forBuild({ store: this.opts.store, snapshotter: this.opts.snapshotter }, from.state, {
      keyPrefix: `build-${this.id}-${stage.index}`,
      scratch: this.scratch,
      ...this.epochOpt(),
      ...(this.opts.disableCompression === false ? { compression: { format: this.opts.compression?.format ?? 'gzip', ...(this.opts.compression?.level !== undefined ? { level: this.opts.compression.level } : {}) } } : {}),
    });
    this.containers.add(wc);
    const sr: StageRun = { stage, wc, key: from.key, layered, args: new Map(), platform, ...(from.diverged !== undefined ? { diverged: from.diverged } : {}) };
    const globals = this.globalArgs();
    // ONBUILD triggers of the base image run first, as if written right after FROM; the new
    // image does not inherit them.
    const triggers = (from.state.container.OnBuild ?? []).map((t) => this.trigger(stage, t));
    if (from.state.container.OnBuild) from.state.container.OnBuild = null;
    this.total += triggers.length;
    for (const [position, ins] of [...triggers, ...stage.instructions].entries()) {
      this.checkAbort();
      const t0 = Date.now();
      let release: (() => void) | undefined;
      try {
        const vars = new InstructionVars([...sr.args, ...sr.wc.state.env()]);
        if (ins.keyword === 'ARG') this.declareArgs(ins, vars, sr.args, globals);
        const prepared = await this.prepare(ins, sr, vars);
        const parent = sr.key;
        const args = [...sr.args].filter(([k]) => !PROXY_ARGS.has(k)).sort();
        const key = cacheKey({ parent, instruction: ins.text, args, ...prepared.key });
        release = layered && !this.opts.noCache ? await this.claim(key) : undefined;
        if (layered && !this.opts.noCache) {
          const hit = await this.loadCached(key);
          if (hit) {
            await sr.wc.reset(hit.state);
            sr.key = key;
            // A registry's entry has no inputs here: record them (this build has them) so that a
            // later miss of this step can be explained. Local hits write nothing.
            if (hit.repo !== undefined) await this.cache.putInputs(key, this.stepIdentity(stage, position, sr), this.stepInputs(parent, ins, args, prepared));
            const step = this.emitStep(stage, ins.text, true, ins.line);
            this.opts.onEvent?.({ type: 'cache', step, hit: true, source: hit.repo === undefined ? 'local' : 'registry', reason: `entry ${shortKey(key)}${hit.repo === undefined ? ' (local)' : ` from --cache-from ${hit.repo}`}` });
            if (this.opts.record) this.stepDone(step, key);
            continue;
          }
        }
        const step = this.emitStep(stage, ins.text, false, ins.line);
        // A miss: what differs from the step's earlier entries, then what this one is made of.
        const identity = layered ? this.stepIdentity(stage, position, sr) : undefined;
        const inputs = this.stepInputs(parent, ins, args, prepared);
        if (this.opts.onEvent) {
          const reason = !layered ? 'no cache (--layers=false)' : this.opts.noCache ? '--no-cache' : await this.cache.explainMiss(key, identity!, inputs, sr.diverged ?? fromStep);
          this.opts.onEvent({ type: 'cache', step, hit: false, reason });
        }
        sr.diverged ??= step;
        await this.execute(sr, ins, vars, step, prepared);
        const size = JSON.stringify(sr.wc.state.config).length;
        if (size > MAX_CONFIG_SIZE) this.fail(ins, `${ins.keyword}: the image config would grow to ${size} bytes, more than the ${MAX_CONFIG_SIZE >> 20} MiB allowed`);
        sr.key = key;
        if (this.opts.record) this.stepDone(step, key);
        if (layered) {
          const { descriptor } = await writeImage(this.opts.store, sr.wc.state.config, sr.wc.state.layers, { format: 'oci' });
          await this.cache.put(key, descriptor);
          await this.cache.putInputs(key, identity!, inputs);
          this.stepStates.delete(key); // keep build order when a key repeats
          this.stepStates.set(key, descriptor);
        }
        this.opts.onEvent?.({ type: 'step-done', step, ms: Date.now() - t0 });
      } catch (e) {
        // Name the Dockerfile line in every error an instruction raises.
        throw this.located(ins, e);
      } finally {
        release?.();
      }
    }
    if (sr.pendingHistory !== undefined) {
      // With layers off the stage's one layer is written after its last instruction: the error
      // is the stage's, named at its FROM.
      try {
        await this.commitPending(sr);
      } catch (e) {
        throw this.located(stage.from, e, `stage ${stage.name ?? stage.index}`);
      }
    }
    this.containers.delete(wc);
    return { state: sr.wc.state, key: sr.key, ...(sr.diverged !== undefined ? { diverged: sr.diverged } : {}) };
  }

  /**
   * Claims `key` among the concurrent builds of one buildPlatforms (see BuildOptions.inflight):
   * when another build is computing it, waits until it is done (its result is then in the cache).
   * The returned function ends the claim.
   */
  private async claim(key: Digest): Promise<(() => void) | undefined> {
    const inflight = this.opts.inflight;
    if (!inflight) return undefined;
    // Checked again after each wait: a third build may have claimed it in between.
    while (inflight.has(key)) await inflight.get(key);
    let done!: () => void;
    inflight.set(key, new Promise<void>((r) => (done = r)));
    return () => {
      inflight.delete(key);
      done();
    };
  }

  /**
   * An image by name: from the store, or pulled from its registry as --pull says (missing: only
   * when the store lacks it; always: every time; never: the store only).
   */
  private async image(ins: Instruction, what: string, name: string, platform?: Platform): Promise<Descriptor> {
    try {
      return await storedOrPulled(this.opts.store, name, this.opts.pull ?? 'missing', () => this.client(), what, platform, { nameForeign: false });
    } catch (e) {
      throw this.located(ins, e);
    }
  }

  /** An ONBUILD trigger as an instruction reported at the FROM line that inherited it. */
  private trigger(stage: Stage, text: string): Instruction {
    let ins: Instruction;
    try {
      ins = parseDockerfile(`FROM scratch\n${text}\n`, this.df.file).stages[0]!.instructions[0]!;
      checkInstruction(ins, this.df.file);
    } catch (e) {
      this.fail(stage.from, `ONBUILD trigger "${truncate(text)}": ${(e as Error).message.replace(/^[^:]*:\d+(:\d+)?: /, '')}`);
    }
    return { ...ins, line: stage.from.line, column: stage.from.column, source: stage.from.source };
  }

  /**
   * A cached state: from the local cache if every blob it names is still in the store, else
   * from the first --cache-from repository that has the key (then recorded in the local cache).
   */
  private async loadCached(key: Digest): Promise<{ state: ImageState; repo?: string } | undefined> {
    let d = await this.cache.get(key);
    let state = d && (await this.readCached(d));
    let repo: string | undefined;
    if (!state) {
      d = await this.fetchCached(key);
      state = d && (await this.readCached(d));
      if (state) {
        await this.cache.put(key, d!);
        repo = this.importedFrom.get(key);
      }
    }
    if (!state) return undefined;
    this.stepStates.delete(key);
    this.stepStates.set(key, d!);
    return { state, ...(repo !== undefined ? { repo } : {}) };
  }

  private stepInputs(parent: Digest, ins: Instruction, args: [string, string][], prepared: { inputs?: StepInputs['copy'] }): StepInputs {
    return { parent, text: ins.text, args, ...(prepared.inputs ? { copy: prepared.inputs } : {}) };
  }

  /**
   * What makes a step "the same step" across builds, for --explain-cache's index of earlier
   * entries: the context and Dockerfile, the platform, the stage and the instruction's position
   * in it (ONBUILD triggers counted). Not the parent nor the text: those are what a miss explains.
   */
  private stepIdentity(stage: Stage, position: number, sr: StageRun): Digest {
    return cacheKey({ context: this.opts.context, dockerfile: this.opts.dockerfile ?? null, platform: formatPlatform(sr.platform.platform), stage: stage.index, position });
  }

  /** The manifest of `key` from the first --cache-from repository that has it. */
  private async fetchCached(key: Digest): Promise<Descriptor | undefined> {
    for (const repo of [...this.cacheFrom]) {
      this.checkAbort();
      const name = formatReference(repo);
      try {
        const d = await importCacheEntry(await this.client(), this.opts.store, repo, key);
        if (d) {
          this.importedFrom.set(key, name);
          return d;
        }
      } catch (e) {
        // Any failure, typed or not (a refused connection surfaces as a plain Error with a
        // code), costs this step its cache, not the build. One warning, then the build goes on
        // without this repository rather than paying for the same failure (a timeout, a refused
        // login) at every step.
        if (e instanceof CancelledError || this.opts.signal?.aborted) throw e;
        const i = this.cacheFrom.indexOf(repo);
        if (i < 0) continue; // a parallel stage dropped it already
        this.cacheFrom.splice(i, 1);
        this.opts.onEvent?.({ type: 'warning', message: `--cache-from ${name}: ${(e as Error).message}; not using it for the rest of this build` });
      }
    }
    return undefined;
  }

  private async readCached(d: Descriptor): Promise<ImageState | undefined> {
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
    for (const { name, value } of expandArgWords(ins.args, vars, this.df.escape)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail(ins, `ARG name "${name}" is not a valid variable name`);
      const v = this.opts.buildArgs?.[name] ?? value ?? globals.get(name);
      if (v !== undefined) args.set(name, v);
    }
  }

  /** Work an instruction needs before its cache key is known: resolving and hashing COPY sources. */
  private async prepare(ins: Instruction, sr: StageRun, vars: Map<string, string>): Promise<{ key: Record<string, unknown>; copy?: CopyFiles; entries?: number; inputs?: StepInputs['copy'] }> {
    if (ins.keyword !== 'COPY' && ins.keyword !== 'ADD') return { key: {} };
    const op = await this.copyOp(ins, sr, vars);
    const sources = await hashSources(op.sources, op.keepOwners);
    return {
      key: { sources: sources.digest, dest: op.dest, uid: op.uid, gid: op.gid, mode: op.mode ?? null },
      copy: op,
      entries: sources.entries,
      inputs: { dest: op.dest, owner: `${op.uid}:${op.gid} ${op.mode ?? ''}`, files: sources.files },
    };
  }

  /** One instruction, by its handler, on the stage's working container. */
  private async execute(sr: StageRun, ins: Instruction, vars: Map<string, string>, step: number, prepared: { copy?: CopyFiles; entries?: number }): Promise<void> {
    const handler = HANDLERS[ins.keyword];
    if (!handler) this.fail(ins, `${ins.keyword} is not supported by this version of tsbuild yet`);
    const proxy = new Map<string, string>();
    for (const k of PROXY_ARGS) {
      const v = this.opts.buildArgs?.[k];
      if (v !== undefined) proxy.set(k, v);
    }
    // Only RUN writes output: its complete log goes into the build's record (tsbuild logs).
    const log = this.opts.record !== undefined && ins.keyword === 'RUN' ? await StepLog.open(path.join(this.opts.record.dir, 'logs'), step, ins.text) : undefined;
    const stdout = log !== undefined ? log.tee(this.opts.stdout, process.stdout) : this.opts.stdout;
    const stderr = log !== undefined ? log.tee(this.opts.stderr, process.stderr) : this.opts.stderr;
    const scope: StepScope = {
      file: this.df.file,
      escape: this.df.escape,
      step,
      vars,
      args: sr.args,
      proxy,
      stage: sr,
      prepared,
      ...(this.opts.runtime ? { runtime: this.opts.runtime } : {}),
      ...(stdout ? { stdout } : {}),
      ...(stderr ? { stderr } : {}),
      ...(this.opts.signal ? { signal: this.opts.signal } : {}),
      ...(log !== undefined ? { logHint: `tsbuild logs ${this.opts.record!.id} --step ${step}` } : {}),
      scratch: path.join(this.scratch, `step-${step}`),
      timestamp: () => this.timestamp(),
      fail: (message) => this.fail(ins, message),
      failAt: (needle, message) => this.failAt(ins, needle, message),
      layerStep: (createdBy, change, dropIfEmpty) => this.layerStep(sr, step, createdBy, change, dropIfEmpty),
      runMounts: (mounts, scratch) => this.prepareRunMounts(ins, sr, mounts, scratch),
      reportUsage: (wallMs, usage) => this.opts.onEvent?.({ type: 'step-usage', step, wallMs: Math.round(wallMs), ...roundUsage(usage) }),
      ...(this.opts.record ? { keepFailed: (run) => this.keepFailed(sr, ins, step, run) } : {}),
    };
    try {
      await handler(ins, scope, sr.wc);
    } finally {
      await log?.close();
    }
  }

  private stepDone(step: number, key: Digest, state?: ImageState): void {
    const e = this.steps.find((x) => x.step === step);
    if (!e) return;
    e.key = key;
    if (state) e.state = { config: structuredClone(state.config), layers: [...state.layers] };
  }

  /** A failed RUN's state, kept in the build's record for `tsbuild debug` (issue 19). */
  private async keepFailed(sr: StageRun, ins: Instruction, step: number, run: Parameters<NonNullable<StepScope['keepFailed']>>[0]): Promise<string> {
    const record = this.opts.record!;
    const contextDir = run.mounts.some((m) => m.type === 'bind') ? (await this.context()).dir : this.opts.context;
    return keepFailedRun(record, sr.wc, { ...run, step, text: ins.text, config: sr.wc.state.config, storeRoot: this.opts.store.root, contextDir });
  }

  private timestamp(): string {
    const epoch = this.opts.sourceDateEpoch;
    return isoTime(epoch !== undefined ? epoch * 1000 : Date.now());
  }

  /**
   * The host side of RUN --mount: a cache directory under <store>/cache-mounts, a bind source
   * (context, stage or image; a throw-away copy when rw), a secret written to a private file.
   * `release` ends a cache mount's locked use.
   */
  private async prepareRunMounts(ins: Instruction, sr: StageRun, mounts: RunMount[], scratch: string): Promise<{ mounts: ExtraMount[]; release: () => void }> {
    const out: ExtraMount[] = [];
    const releases: (() => void)[] = [];
    const release = () => releases.forEach((r) => r());
    try {
      for (const [i, m] of mounts.entries()) {
        const dir = path.join(scratch, String(i));
        switch (m.type) {
          case 'tmpfs':
            out.push({ destination: m.target, type: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', ...(m.size !== undefined ? [`size=${m.size}`] : [])] });
            break;
          case 'cache': {
            let host = path.join(this.opts.store.root, 'cache-mounts', cacheMountDirName(m.id));
            if (m.sharing !== 'shared') {
              const busy = CACHE_MOUNTS_IN_USE.get(host);
              if (busy && m.sharing === 'locked') {
                await busy.promise;
              } else if (busy) {
                host = dir; // private: a fresh directory while another RUN holds the shared one
              }
              if (host !== dir) {
                let done!: () => void;
                const promise = new Promise<void>((r) => (done = r));
                CACHE_MOUNTS_IN_USE.set(host, { promise });
                const h = host;
                releases.push(() => {
                  CACHE_MOUNTS_IN_USE.delete(h);
                  done();
                });
              }
            }
            if (!(await fsp.lstat(host).catch(() => undefined))) {
              await fsp.mkdir(host, { recursive: true });
              await fsp.chmod(host, m.mode);
              await fsp.chown(host, m.uid, m.gid);
            }
            out.push({ destination: m.target, type: 'bind', source: host, options: m.readonly ? ['ro'] : [] });
            break;
          }
          case 'bind': {
            // The source is resolved inside its root (the context, or the other stage's
            // filesystem), the last component too: a symlink to / stays a symlink to that root.
            let bind: { source: string; sourcePath?: string };
            if (m.from === undefined) {
              const ctx = await this.context();
              const fd = await ctx.open(m.source).catch((e: NodeJS.ErrnoException) => {
                if (e.code === 'ENOENT' || e.code === 'ENOTDIR') this.failAt(ins, m.source, `RUN --mount source ${m.source}: no such file or directory in the build context`);
                this.failAt(ins, m.source, `RUN --mount source ${m.source}: ${e.message}`);
              });
              // rw copies the resolved object by the path the kernel gives its descriptor (no link left in
              // it; the build never writes the context); ro is resolved again by the helper, at mount time.
              bind = withFd(fd, (at) => (m.readwrite ? { source: fdPath(at) } : { source: ctx.dir, sourcePath: m.source }));
            } else {
              const state = await this.stateOf(ins, sr, m.from, `RUN --mount from=${m.from}`, `from=${m.from}`);
              const view = await MergedView.open(this.opts.snapshotter, await this.ensureSnapshot(state));
              if (!(await view.stat(m.source, true))) this.failAt(ins, m.source, `RUN --mount from=${m.from} source ${m.source}: no such file or directory in ${m.from}`);
              const host = path.join(dir, 'view');
              await fsp.mkdir(dir, { recursive: true });
              await view.materialize(m.source, host, true);
              bind = { source: host };
            }
            if (m.readwrite) {
              // rw: writes go to a copy that is thrown away after the RUN (never the context, never a layer).
              const copy = path.join(dir, 'rw');
              await fsp.mkdir(dir, { recursive: true });
              await fsp.cp(bind.source, copy, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
              bind = { source: copy };
            }
            out.push({ destination: m.target, type: 'bind', ...bind, options: m.readwrite ? [] : ['ro'] });
            break;
          }
          case 'secret': {
            const value = await this.secret(ins, m.id);
            if (value === undefined) {
              if (m.required) this.failAt(ins, `id=${m.id}`, `RUN --mount=type=secret,id=${m.id}: the secret is required but was not given (--secret id=${m.id},src=PATH)`);
              break;
            }
            await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
            const file = path.join(dir, 'secret');
            await fsp.writeFile(file, value, { mode: 0o600 });
            await fsp.chown(file, m.uid, m.gid);
            await fsp.chmod(file, m.mode);
            out.push({ destination: m.target, type: 'bind', source: file, options: ['ro', 'nosuid', 'nodev', 'noexec'] });
            break;
          }
        }
      }
    } catch (e) {
      release();
      throw e;
    }
    return { mounts: out, release };
  }

  private async secret(ins: Instruction, id: string): Promise<Buffer | undefined> {
    const s = this.opts.secrets?.[id];
    if (s === undefined) return undefined;
    if ('env' in s) {
      const v = process.env[s.env];
      return v === undefined ? undefined : Buffer.from(v);
    }
    try {
      return await fsp.readFile(s.src);
    } catch (e) {
      this.failAt(ins, `id=${id}`, `secret ${id}: cannot read ${s.src}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }

  /**
   * The files a COPY or ADD puts into the image, staged as host paths: context files (after
   * .dockerignore), here-documents written to files, another stage's or image's files read out of
   * its snapshots (--from), ADD's unpacked archives and downloads.
   */
  private async copyOp(ins: Instruction, sr: StageRun, vars: Map<string, string>): Promise<CopyFiles> {
    // --link (BuildKit: a layer independent of its parent) gives the same filesystem; accepted as such.
    const staging = path.join(this.scratch, `sources-${ins.line}-${randomHex(3)}`);
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
    // The sources are wildcard patterns: an escaped `*?[]` stays escaped for the matcher; the
    // destination is a plain path again. The JSON form's words are patterns as written.
    const words = ins.json ?? expandWords(rawArgs, vars, this.df.escape, undefined, { globEscapes: true });
    if (words.length < 2) this.fail(ins, `${ins.keyword} requires at least two arguments: ${ins.keyword} <src>... <dest>`);
    const flag = (name: string) => {
      const v = ins.flags.get(name)?.at(-1);
      return v === undefined ? undefined : expandWord(v, vars, this.df.escape);
    };
    const from = ins.flags.get('from')?.at(-1);
    const chown = flag('chown');
    const chmod = ins.flags.get('chmod')?.at(-1);
    const checksum = ins.flags.get('checksum')?.at(-1);
    const spec: CopySpec = {
      kind: ins.keyword === 'ADD' ? 'ADD' : 'COPY',
      sources: words.slice(0, -1).map((w) => {
        const heredoc = /^__tsbuild_heredoc_(.+)$/.exec(w);
        return heredoc ? { file: heredocFiles.get(heredoc[1]!)! } : w;
      }),
      dest: ins.json ? words.at(-1)! : unescapeGlob(words.at(-1)!),
      workdir: sr.wc.state.container.WorkingDir || '/',
      ...(from !== undefined ? { from: expandWord(from, vars, this.df.escape) } : {}),
      ...(chown !== undefined ? { chown } : {}),
      ...(chmod !== undefined ? { chmod } : {}),
      ...(checksum !== undefined ? { checksum } : {}),
      exclude: ins.flags.get('exclude')?.map((x) => expandWord(x, vars, this.df.escape)) ?? [],
      parents: ins.flags.has('parents') && ins.flags.get('parents')!.at(-1) !== 'false',
    };
    return resolveCopy(spec, {
      staging,
      context: () => this.context(),
      fromView: async (name) => {
        const state = await this.stateOf(ins, sr, name, `${ins.keyword} --from=${name}`);
        return MergedView.open(this.opts.snapshotter, await this.ensureSnapshot(state));
      },
      owner: async (user) => resolveUser(this.opts.snapshotter, await sr.wc.filesystem(), user, true),
      ...(this.opts.signal ? { signal: this.opts.signal } : {}),
    });
  }

  /** The image state `--from` names: an earlier stage (by name or index), or an image. */
  private async stateOf(ins: Instruction, sr: StageRun, from: string, what: string, needle = '--from'): Promise<ImageState> {
    const stage = this.stageByName(from, sr.stage.index);
    if (stage) {
      const r = this.stageResults.get(stage.index);
      if (!r) this.failAt(ins, needle, `${what}: stage ${from} has not been built`);
      return r.state;
    }
    if (/^\d+$/.test(from)) this.failAt(ins, needle, `${what}: no stage ${from} before this one`);
    let desc: Descriptor;
    try {
      desc = await this.image(ins, what, from, sr.platform.explicit ? sr.platform.platform : undefined);
    } catch (e) {
      if (e instanceof CancelledError || !(e instanceof TsbuildError)) throw e;
      this.failAt(ins, needle, `${what}: no stage of that name, and no such image in the local store (${e.message.replace(/^[^:]*:\d+(:\d+)?: [^:]*: /, '')})`);
    }
    const img = this.opts.store.image(desc);
    const [config, layers] = await Promise.all([img.config(), img.layers()]);
    return ImageState.from(config, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
  }

  private context(): Promise<BuildContext> {
    // The Dockerfile's own ignore file (Dockerfile.dockerignore) counts for the default one too.
    const dockerfile = this.opts.dockerfile ?? (this.opts.dockerfileText === undefined ? path.join(this.opts.context, 'Dockerfile') : undefined);
    this.contextP ??= BuildContext.open(this.opts.context, dockerfile, this.scratch);
    return this.contextP;
  }

  /** The committed snapshot of another stage's or an image's layers (see imageSnapshot). */
  private ensureSnapshot(state: ImageState): Promise<string | undefined> {
    return imageSnapshot({ store: this.opts.store, snapshotter: this.opts.snapshotter }, state);
  }

  /**
   * A step that changes the filesystem: `change` works on the stage's container, then its changes
   * become a layer (WorkingContainer.commitStep). With `dropIfEmpty`, a change that touched
   * nothing adds no layer, only a history entry. With layers off, every change of the stage stays
   * in the container until the stage's end (commitPending).
   */
  private async layerStep(sr: StageRun, step: number, createdBy: string, change: () => Promise<void>, dropIfEmpty = false): Promise<void> {
    this.checkAbort();
    await change();
    const history: HistoryEntry = { created: this.timestamp(), created_by: createdBy };
    if (!sr.layered) {
      const state = sr.wc.state;
      state.addHistory(history);
      sr.pendingHistory = state.config.history!.length - 1;
      return;
    }
    await this.commitStep(sr, step, history, { dropIfEmpty });
  }

  /** With layers off: the stage's one layer, taking the history entry of its last change. */
  private async commitPending(sr: StageRun): Promise<void> {
    const historyIndex = sr.pendingHistory!;
    sr.pendingHistory = undefined;
    const entry = sr.wc.state.config.history!.splice(historyIndex, 1)[0]!;
    delete entry.empty_layer;
    await this.commitStep(sr, this.step, entry, { historyIndex });
  }

  private async commitStep(sr: StageRun, step: number, history: HistoryEntry, opts: { dropIfEmpty?: boolean; historyIndex?: number }): Promise<void> {
    let layer: Descriptor | undefined;
    try {
      layer = await sr.wc.commitStep(history, opts);
    } catch (e) {
      // An I/O error here (ENOSPC while the layer's blob is written) says nothing of the step.
      throw withContext(e, `writing the layer of step ${step}`);
    }
    if (layer) this.opts.onEvent?.({ type: 'layer', step, digest: layer.digest, size: layer.size });
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
 * The platform build args docker predefines in the global scope: TARGET* the platform the build
 * makes images for, BUILD* this machine's. Docker's values are BuildKit's normalised platform
 * strings, which leave out arm64's default variant (`linux/arm64`, TARGETVARIANT empty) while
 * our platforms write it (v8, as image configs and lists carry it); arm keeps its v7.
 */
/**
 * The values of the global ARGs (before the first FROM) with the platform ARGs docker predefines
 * there, for a build for `target`: the one reading of them, for the build and for `--check`.
 * An ARG whose default cannot be expanded goes to `failed` (which may throw) and is left out.
 */
export function globalArgValues(df: ParsedDockerfile, buildArgs: Record<string, string> | undefined, target: Platform, failed: (ins: Instruction, e: unknown) => void): Map<string, string> {
  const m = platformArgs(target);
  for (const ins of df.globalArgs) {
    try {
      for (const { name, value } of expandArgWords(ins.args, new InstructionVars(m), df.escape)) {
        const v = buildArgs?.[name] ?? value;
        if (v !== undefined) m.set(name, v);
      }
    } catch (e) {
      failed(ins, e);
    }
  }
  return m;
}

function platformArgs(target: Platform): Map<string, string> {
  const m = new Map<string, string>();
  for (const [prefix, platform] of [['TARGET', target], ['BUILD', hostPlatform()]] as const) {
    const p = normalisePlatform(platform);
    if (p.architecture === 'arm64' && p.variant === 'v8') delete p.variant;
    m.set(`${prefix}PLATFORM`, formatPlatform(p));
    m.set(`${prefix}OS`, p.os);
    m.set(`${prefix}ARCH`, p.architecture);
    m.set(`${prefix}VARIANT`, p.variant ?? '');
  }
  return m;
}

/**
 * `state` with its config naming `platform`, as buildah writes the platform it built for into
 * the config: a base image whose config omits the variant, or a scratch stage built for another
 * platform. A config that already names it is left as it is, so its image ID stays.
 */
function withPlatform(state: ImageState, platform: Platform): ImageState {
  const c = state.config;
  const own = configPlatform(c);
  if (samePlatformAs(own, platform) && own.variant === platform.variant) return state;
  c.os = platform.os;
  c.architecture = platform.architecture;
  if (platform.variant !== undefined) c.variant = platform.variant;
  else delete c.variant;
  return state;
}

/** Cache mounts held by a RUN with sharing=locked or private, in this process. */
const CACHE_MOUNTS_IN_USE = new Map<string, { promise: Promise<void> }>();

/** The build's compression settings as compressImage takes them (gzip at its default level unless set). */
function layerCompressionOptions(opts: BuildOptions): CompressImageOptions {
  return { format: opts.compression?.format ?? 'gzip', ...(opts.compression?.level !== undefined ? { level: opts.compression.level } : {}) };
}

/** Whole milliseconds and bytes for the step-usage event; a figure the host did not count stays absent. */
function roundUsage(u: RunUsage | undefined): { cpuMs?: number; peakMemoryBytes?: number; writtenBytes?: number } {
  const out: { cpuMs?: number; peakMemoryBytes?: number; writtenBytes?: number } = {};
  if (u?.cpuMs !== undefined) out.cpuMs = Math.round(u.cpuMs);
  if (u?.peakMemoryBytes !== undefined) out.peakMemoryBytes = u.peakMemoryBytes;
  if (u?.writtenBytes !== undefined) out.writtenBytes = u.writtenBytes;
  return out;
}
