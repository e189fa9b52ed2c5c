import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
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
  formatReference,
  parseReference,
} from '@tsbuild/oci';
import { type Store, ingestLayer } from '@tsbuild/store';
import { type OverlaySnapshotter, diff, unpack } from '@tsbuild/snapshotter';
import { type CopyOp, copyInto, run } from '@tsbuild/runtime';
import { BuildContext } from './context.js';
import { DockerfileError, type Instruction, type ParsedDockerfile, type Stage, parseDockerfile } from './dockerfile.js';
import { expandWord, expandWords, splitRaw } from './expand.js';
import { ImageState } from './image-state.js';
import { resolveUser } from './user.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type BuildEvent =
  | { type: 'step'; step: number; total: number; stage: number; text: string }
  | { type: 'layer'; step: number; digest: Digest; size: number; empty: boolean }
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
  /** Where RUN output goes (default: discarded). */
  stdout?: Writable;
  stderr?: Writable;
  onEvent?: (e: BuildEvent) => void;
  signal?: AbortSignal;
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
 * snapshot committed under the chainID of the layers so far. Nothing is named until every step
 * succeeded; on failure the build's active snapshots and scratch files are removed, so the store
 * is as it was (blobs already written are unreferenced and go with the next prune).
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
  return store.withLock('shared', async () => {
    const scratch = path.join(store.root, 'tmp', `build-${randomBytes(6).toString('hex')}`);
    await fsp.mkdir(scratch, { recursive: true });
    const b = new Builder(opts, parsed, scratch);
    try {
      const final = await b.run();
      const manifest = await writeImage(store, final, opts.sourceDateEpoch);
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

class Builder {
  private readonly active = new Set<string>();
  private contextP?: Promise<BuildContext>;
  private step = 0;
  private total = 0;
  private readonly stageResults = new Map<number, ImageState>();
  private readonly id = randomBytes(6).toString('hex');

  constructor(
    private readonly opts: BuildOptions,
    private readonly df: ParsedDockerfile,
    private readonly scratch: string,
  ) {}

  async run(): Promise<ImageState> {
    const target = this.targetStage();
    const needed = this.neededStages(target);
    this.total = needed.reduce((n, s) => n + 1 + s.instructions.length, 0);
    let last: ImageState | undefined;
    for (const stage of needed) {
      last = await this.buildStage(stage);
      this.stageResults.set(stage.index, last);
      this.opts.onEvent?.({ type: 'stage-done', stage: stage.index, ...(stage.name ? { name: stage.name } : {}) });
    }
    return last!;
  }

  async cleanup(): Promise<void> {
    for (const key of this.active) await this.opts.snapshotter.remove(key).catch(() => undefined);
    this.active.clear();
  }

  private targetStage(): Stage {
    if (this.opts.target === undefined) return this.df.stages.at(-1)!;
    const t = this.df.stages.find((s) => s.name === this.opts.target!.toLowerCase());
    if (!t) throw new InvalidArgumentError(`target stage "${this.opts.target}" could not be found in ${this.df.file}`);
    return t;
  }

  /** The target and the stages it builds FROM, in Dockerfile order; others are not built. */
  private neededStages(target: Stage): Stage[] {
    const need = new Set<number>();
    const visit = (s: Stage) => {
      if (need.has(s.index)) return;
      need.add(s.index);
      const base = this.stageByName(this.fromImage(s), s.index);
      if (base) visit(base);
    };
    visit(target);
    return this.df.stages.filter((s) => need.has(s.index));
  }

  private stageByName(name: string, before: number): Stage | undefined {
    const n = name.toLowerCase();
    return this.df.stages.find((s) => s.index < before && (s.name === n || String(s.index) === n));
  }

  private globalArgs(): Map<string, string> {
    const m = new Map<string, string>();
    for (const ins of this.df.globalArgs) {
      for (const [k, v] of this.argDecls(ins, m)) m.set(k, v);
    }
    return m;
  }

  private argDecls(ins: Instruction, vars: Map<string, string>): [string, string][] {
    const out: [string, string][] = [];
    for (const w of expandWords(ins.args, vars, this.df.escape)) {
      const eq = w.indexOf('=');
      const name = eq >= 0 ? w.slice(0, eq) : w;
      const dflt = eq >= 0 ? w.slice(eq + 1) : undefined;
      const given = this.opts.buildArgs?.[name];
      const v = given ?? dflt;
      if (v !== undefined) out.push([name, v]);
    }
    return out;
  }

  private fromImage(stage: Stage): string {
    const words = expandWords(stage.from.args, this.globalArgs(), this.df.escape);
    return words[0]!;
  }

  private fail(ins: Instruction, message: string): never {
    throw new DockerfileError(this.df.file, ins.line, message);
  }

  private emitStep(stage: Stage, text: string): number {
    this.step++;
    this.opts.onEvent?.({ type: 'step', step: this.step, total: this.total, stage: stage.index, text });
    return this.step;
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new CancelledError('build cancelled');
  }

  private async buildStage(stage: Stage): Promise<ImageState> {
    const { store, snapshotter } = this.opts;
    this.emitStep(stage, stage.from.text);
    const fromName = this.fromImage(stage);
    let state: ImageState;
    const base = this.stageByName(fromName, stage.index);
    if (base) {
      state = ImageState.from(this.stageResults.get(base.index)!.config, this.stageResults.get(base.index)!.layers);
    } else if (fromName === 'scratch') {
      state = ImageState.scratch();
    } else {
      let desc: Descriptor;
      try {
        desc = (await store.resolve(fromName)).descriptor;
      } catch (e) {
        if (e instanceof NotFoundError) this.fail(stage.from, `FROM ${fromName}: image not known in the local store (pull or import it first)`);
        throw e;
      }
      const img = store.image(desc);
      const [config, layers] = await Promise.all([img.config(), img.layers()]);
      await unpack(snapshotter, layers.map((l) => ({ diffID: l.diffID, open: () => l.compressed() })));
      state = ImageState.from(config, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
    }
    // Build args in scope for this stage: declared by ARG in the stage (global ones by re-declaring).
    const args = new Map<string, string>();
    const globals = this.globalArgs();
    for (const ins of stage.instructions) {
      this.checkAbort();
      const step = this.emitStep(stage, ins.text);
      const vars = new Map([...args, ...state.env()]);
      try {
        await this.execute(stage, ins, state, vars, args, globals, step);
      } catch (e) {
        if (e instanceof DockerfileError || !(e instanceof TsbuildError)) throw e;
        // Name the Dockerfile line in every error an instruction raises.
        throw new DockerfileError(this.df.file, ins.line, e.message);
      }
    }
    return state;
  }

  private async execute(stage: Stage, ins: Instruction, state: ImageState, vars: Map<string, string>, args: Map<string, string>, globals: Map<string, string>, step: number): Promise<void> {
    const esc = this.df.escape;
    const c = state.container;
    const created = this.timestamp();
    const nop = (text: string): HistoryEntry => ({ created, created_by: `/bin/sh -c #(nop) ${text}` });
    switch (ins.keyword) {
      case 'ARG': {
        for (const w of expandWords(ins.args, vars, esc)) {
          const eq = w.indexOf('=');
          const name = eq >= 0 ? w.slice(0, eq) : w;
          const v = this.opts.buildArgs?.[name] ?? (eq >= 0 ? w.slice(eq + 1) : globals.get(name));
          if (v !== undefined) args.set(name, v);
        }
        state.addHistory(nop(ins.text));
        return;
      }
      case 'ENV': {
        for (const [k, v] of parseKeyValues(ins, vars, esc, this.df.file)) state.setEnv(k, v);
        state.addHistory(nop(`ENV ${(parseKeyValues(ins, vars, esc, this.df.file)).map(([k, v]) => `${k}=${v}`).join(' ')}`));
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
        await this.layerStep(state, step, `/bin/sh -c #(nop) WORKDIR ${resolved}`, async (mounts, dirScratch) => {
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
      case 'RUN':
        return this.runStep(state, ins, vars, args, step);
      case 'COPY':
        return this.copyStep(state, ins, vars, step);
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
    return resolveUser(this.opts.snapshotter, state.snapshot, spec);
  }

  private async runStep(state: ImageState, ins: Instruction, vars: Map<string, string>, args: Map<string, string>, step: number): Promise<void> {
    if (ins.flags.size > 0) this.fail(ins, `RUN --${[...ins.flags.keys()][0]} is not supported by this version of tsbuild yet`);
    const c = state.container;
    const argv = ins.json ?? [...(c.Shell ?? ['/bin/sh', '-c']), ins.args];
    if (argv.length === 0) this.fail(ins, 'RUN requires at least one argument');
    const env = new Map(state.env());
    // Build args reach RUN's environment but are not stored in the image's Env.
    for (const [k, v] of args) if (!env.has(k)) env.set(k, v);
    if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
    const user = await this.user(state, vars);
    const createdBy = ins.json ? ins.json.join(' ') : `/bin/sh -c ${ins.args}`;
    await this.layerStep(state, step, createdBy, async (mounts, runScratch) => {
      const res = await run(
        {
          args: argv,
          env: [...env].map(([k, v]) => `${k}=${v}`),
          cwd: c.WorkingDir || '/',
          user,
          rootfs: mounts,
          scratchDir: runScratch,
        },
        { stdin: 'ignore', stdout: this.opts.stdout ?? 'inherit', stderr: this.opts.stderr ?? 'inherit' },
        this.opts.signal,
      );
      if (res.exitCode !== 0 || res.signal) {
        const how = res.signal ? `was killed by ${res.signal}` : `exited with status ${res.exitCode}`;
        this.fail(ins, `RUN ${truncate(ins.args)} ${how}`);
      }
    });
  }

  private async copyStep(state: ImageState, ins: Instruction, vars: Map<string, string>, step: number): Promise<void> {
    for (const f of ins.flags.keys()) if (f !== 'chown' && f !== 'chmod') this.fail(ins, `COPY --${f} is not supported by this version of tsbuild yet`);
    const words = ins.json ?? expandWords(ins.args, vars, this.df.escape);
    if (words.length < 2) this.fail(ins, 'COPY requires at least two arguments: COPY <src>... <dest>');
    const srcs = words.slice(0, -1);
    let dest = words.at(-1)!;
    const wd = state.container.WorkingDir || '/';
    const trailing = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
    dest = path.posix.resolve(wd, dest) + (trailing && dest !== '/' ? '/' : '');
    const ctx = await this.context();
    const hostPaths = await ctx.resolve(srcs);
    if (hostPaths.length > 1 && !dest.endsWith('/')) {
      this.fail(ins, `When using COPY with more than one source file, the destination must be a directory and end with a /`);
    }
    let uid = 0;
    let gid = 0;
    const chown = ins.flags.get('chown')?.at(-1);
    if (chown !== undefined) {
      const u = await resolveUser(this.opts.snapshotter, state.snapshot, expandWord(chown, vars, this.df.escape), true);
      uid = u.uid;
      gid = u.gid;
    }
    let mode: number | undefined;
    const chmod = ins.flags.get('chmod')?.at(-1);
    if (chmod !== undefined) {
      if (!/^[0-7]{3,4}$/.test(chmod)) this.fail(ins, `COPY --chmod=${chmod}: want an octal mode such as 755`);
      mode = parseInt(chmod, 8);
    }
    const op: CopyOp = { op: 'copy', sources: hostPaths, dest, uid, gid, ...(mode !== undefined ? { mode } : {}) };
    await this.layerStep(state, step, `/bin/sh -c #(nop) COPY ${ins.args}`, async (mounts, copyScratch) => {
      await copyInto(mounts, copyScratch, [op], this.opts.signal);
    });
  }

  private context(): Promise<BuildContext> {
    this.contextP ??= BuildContext.open(this.opts.context, this.opts.dockerfile, this.scratch);
    return this.contextP;
  }

  /**
   * Runs `change` against a fresh active snapshot on top of the image, then turns the snapshot's
   * changes into a layer: diff → gzip blob (+ diffID) → commit the snapshot under the new chainID.
   * With `dropIfEmpty`, a change that touched nothing adds no layer, only a history entry.
   */
  private async layerStep(
    state: ImageState,
    step: number,
    createdBy: string,
    change: (mounts: Awaited<ReturnType<OverlaySnapshotter['prepare']>>, scratch: string) => Promise<void>,
    dropIfEmpty = false,
  ): Promise<void> {
    this.checkAbort();
    const s = this.opts.snapshotter;
    const key = `build-${this.id}-${step}`;
    const parent = state.snapshot;
    const mounts = await s.prepare(key, parent);
    this.active.add(key);
    await change(mounts, path.join(this.scratch, `step-${step}`));
    if (dropIfEmpty && (await fsp.readdir(await s.fsDir(key))).length === 0) {
      await s.remove(key);
      this.active.delete(key);
      state.addHistory({ created: this.timestamp(), created_by: createdBy });
      return;
    }
    const layer = await ingestLayer(this.opts.store.content, diff(s, key, this.epochOpt()), { compression: 'gzip' });
    const desc: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: layer.digest, size: layer.size };
    state.addLayer(desc, layer.diffID, { created: this.timestamp(), created_by: createdBy });
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
    this.opts.onEvent?.({ type: 'layer', step, digest: layer.digest, size: layer.size, empty: false });
  }

  private epochOpt(): { sourceDateEpoch?: number } {
    return this.opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: this.opts.sourceDateEpoch } : {};
  }
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

/** Writes the config and an OCI manifest for a finished stage. */
export async function writeImage(store: Store, state: ImageState, sourceDateEpoch?: number): Promise<WrittenImage> {
  const config: ImageConfig = structuredClone(state.config);
  config.created = new Date(sourceDateEpoch !== undefined ? sourceDateEpoch * 1000 : Date.now()).toISOString();
  const configDesc = await store.putJSON(config, MediaType.OciConfig);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDesc,
    layers: state.layers,
  };
  const descriptor = await store.putJSON(manifest, MediaType.OciManifest);
  return { descriptor, configDigest: configDesc.digest };
}

