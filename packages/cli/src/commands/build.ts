import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { Args, CliError, Flags } from '../cli-kit.js';
import { InvalidArgumentError, type Platform, digestHex, formatPlatform, parsePlatform, shortId } from '@tsbuild/oci';
import { apply } from '@tsbuild/snapshotter';
import { isatty } from 'node:tty';
import { enterRecord } from './debug.js';
import { type BuildEvent, BuildRecords, MAX_DOCKERFILE_SIZE, MAX_SOURCE_DATE_EPOCH, MetadataRecorder, allPlatforms, build, buildPlatforms, checkBuild, readKeptState } from '@tsbuild/builder';
import { BaseCommand } from '../base-command.js';
import { runtimeFlags, runtimeOptions } from '../run-flags.js';
import type { RegistryClient } from '@tsbuild/registry-client';
import { ProgressPrinter, registryClient, registryFlags } from '../registry-flags.js';
import { platformFlag } from '../platform-flag.js';
import { print } from '../print.js';

export default class Build extends BaseCommand<typeof Build> {
  static override summary = 'Build an image from a Dockerfile';
  static override description =
    'Runs each instruction of the Dockerfile in CONTEXT (default: the current directory) and stores the resulting image. ' +
    'RUN steps run in their own mount, PID, UTS and IPC namespaces on an overlay of the image built so far; each RUN, COPY ' +
    'and directory-creating WORKDIR adds one layer.';
  static override examples = ['<%= config.bin %> build -t hello fixtures/hello', '<%= config.bin %> build -f ci/Dockerfile -t app:1 --build-arg VERSION=1 .'];
  static override args = { context: Args.string({ description: 'build context directory, or - for a tar (plain or compressed) on stdin', default: '.' }) };
  static override flags = {
    file: Flags.string({ char: 'f', description: 'Dockerfile path (default: CONTEXT/Dockerfile); - reads it from stdin' }),
    tag: Flags.string({ char: 't', description: 'name for the image (repeatable)', multiple: true }),
    'build-arg': Flags.string({ description: 'ARG value, KEY=VALUE or KEY to take it from the environment (repeatable)', multiple: true }),
    'build-arg-file': Flags.string({ description: 'file of KEY=VALUE lines (# comments) to read build args from (repeatable)', multiple: true }),
    target: Flags.string({ description: 'build this stage and the stages it needs' }),
    'no-cache': Flags.boolean({ description: 'run every step even when the cache has it' }),
    layers: Flags.boolean({ description: 'one layer per instruction, with the build cache (--no-layers: one layer per stage)', default: true, allowNo: true }),
    squash: Flags.boolean({ description: 'squash the final stage\'s new layers into one' }),
    format: Flags.string({ description: 'manifest format', options: ['oci', 'docker'], default: 'oci' }),
    label: Flags.string({ description: 'image label KEY=VALUE (repeatable)', multiple: true }),
    annotation: Flags.string({ description: 'manifest annotation KEY=VALUE (repeatable)', multiple: true }),
    'disable-compression': Flags.boolean({ char: 'D', description: 'store layers uncompressed; they are compressed when pushed (--disable-compression=false compresses at commit)', default: true, allowNo: true }),
    'compression-format': Flags.string({ description: 'layer compression at commit (with --disable-compression=false) and for --cache-to', options: ['gzip', 'zstd'], default: 'gzip' }),
    'compression-level': Flags.integer({ description: 'compression level (gzip 1-9, zstd 1-19)' }),
    platform: Flags.string({ description: 'target platform os/arch[/variant]; several (comma-separated or repeated) build a manifest list', multiple: true }),
    'all-platforms': Flags.boolean({ description: 'build for every platform the base images\' manifest lists have in common' }),
    manifest: Flags.string({ description: 'add each platform\'s image to this manifest list (created when missing)' }),
    jobs: Flags.integer({ description: 'how many platforms to build at once (default: all)', min: 1 }),
    timestamp: Flags.integer({
      description: 'seconds since the epoch for created times and file mtimes (reproducible builds); default $SOURCE_DATE_EPOCH',
      // A date must have an ISO form for `created`: JavaScript's span, ±8.64e12 s.
      min: -MAX_SOURCE_DATE_EPOCH,
      max: MAX_SOURCE_DATE_EPOCH,
    }),
    iidfile: Flags.string({ description: 'write the image ID to this file' }),
    quiet: Flags.boolean({ char: 'q', description: 'print only the image ID' }),
    progress: Flags.string({ description: 'output style: plain lines, or tty (bold steps, dim timings); auto picks tty on a terminal', options: ['plain', 'tty', 'auto'], default: 'auto' }),
    secret: Flags.string({ description: 'secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR (repeatable)', multiple: true }),
    'cache-to': Flags.string({ description: 'after the build, push every cached step to this registry repository (tags are cache keys)', helpGroup: 'REGISTRY' }),
    'cache-from': Flags.string({ description: 'registry repository to take cached steps from when the local cache misses (repeatable)', multiple: true, helpGroup: 'REGISTRY' }),
    check: Flags.boolean({ description: 'run the build checks only (no build): print each finding, exit status 1 when there is one' }),
    'on-error': Flags.string({ description: 'when a RUN fails: fail (default), or shell: open a shell in the failed step, then fail (needs a terminal on stdin and stdout; see tsbuild debug)', options: ['fail', 'shell'], default: 'fail' }),
    pull: Flags.string({ description: 'pull FROM images: missing (only what the store lacks), always, never', options: ['missing', 'always', 'never'], default: 'missing' }),
    'explain-cache': Flags.boolean({ description: 'say why each step missed the cache (the first input that differs), or which entry it hit' }),
    'metadata-file': Flags.string({ description: 'write the image digest and ID and each step\'s cache result, time, costs and layer to this JSON file' }),
    ...runtimeFlags,
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Build);
    const f = this.flags;
    const buildArgs: Record<string, string> = {};
    for (const file of f['build-arg-file'] ?? []) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch {
        throw new InvalidArgumentError(`--build-arg-file ${file}: cannot read it`);
      }
      for (const line of text.split(/\r?\n/)) {
        const l = line.trim();
        if (l === '' || l.startsWith('#')) continue;
        setArg(buildArgs, l, `--build-arg-file ${file}`);
      }
    }
    for (const a of f['build-arg'] ?? []) setArg(buildArgs, a, '--build-arg');
    let epoch = f.timestamp;
    if (epoch === undefined && process.env.SOURCE_DATE_EPOCH) {
      epoch = Number(process.env.SOURCE_DATE_EPOCH);
      if (!Number.isSafeInteger(epoch) || Math.abs(epoch) > MAX_SOURCE_DATE_EPOCH) {
        throw new InvalidArgumentError(`SOURCE_DATE_EPOCH=${process.env.SOURCE_DATE_EPOCH}: want whole seconds between -${MAX_SOURCE_DATE_EPOCH} and ${MAX_SOURCE_DATE_EPOCH}`);
      }
    }
    const platforms = platformList(f.platform ?? []);
    if (f['all-platforms'] && platforms.length > 0) throw new CliError('--all-platforms and --platform cannot be used together', 2);
    if (f['metadata-file'] !== undefined && (platforms.length > 1 || f.manifest !== undefined || f['all-platforms'])) throw new CliError('--metadata-file is for a single-platform build (not with several platforms, --manifest or --all-platforms)', 2);
    // A manifest list: several platforms (buildah names it with -t then), --manifest, --all-platforms.
    const multi = platforms.length > 1 || f.manifest !== undefined || f['all-platforms'];
    // --on-error=shell without a terminal is a usage error, said before building: a CI log has no
    // one to type into the shell, and `tsbuild debug last` enters the step later anyway.
    if (f['on-error'] === 'shell' && (multi || !isatty(0) || !isatty(1))) {
      throw new CliError(multi ? '--on-error=shell builds one platform only' : '--on-error=shell needs a terminal on stdin and stdout (without one: tsbuild debug last after the build)', 2);
    }
    if (f.file === '-' && args.context === '-') throw new InvalidArgumentError('the Dockerfile and the context cannot both come from stdin');
    const store = await this.store();
    const scratch = await mkdtemp(path.join(store.root, 'tmp', 'stdin-'));
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const quiet = f.quiet;
    // --progress=tty: the same lines, with step headers bold and timings dim (auto: when stdout is a terminal).
    const tty = f.progress === 'tty' || (f.progress === 'auto' && process.stdout.isTTY === true);
    const style = {
      step: (t: string) => (tty ? `\u001b[1m${t}\u001b[22m` : t),
      dim: (t: string) => (tty ? `\u001b[2m${t}\u001b[22m` : t),
    };
    const started = Date.now();
    // Every client made for pulls (one per platform's build at most), closed at the end.
    const clients: RegistryClient[] = [];
    try {
      let context = path.resolve(args.context);
      let dockerfile: { dockerfile: string } | { dockerfileText: string } | Record<string, never> = {};
      if (args.context === '-') {
        context = path.join(scratch, 'context');
        await mkdir(context);
        await apply(process.stdin, context);
        dockerfile = { dockerfile: path.join(context, f.file ?? 'Dockerfile') };
      } else if (f.file === '-') {
        dockerfile = { dockerfileText: await readCapped(process.stdin, MAX_DOCKERFILE_SIZE + 1) };
      } else if (f.file !== undefined) {
        dockerfile = { dockerfile: path.resolve(f.file) };
      }
      const out = quiet ? devNull() : process.stdout;
      const metadata = f['metadata-file'] !== undefined && !multi ? new MetadataRecorder() : undefined;
      const stepText = new Map<number, string>();
      const usage = new Map<string, BuildEvent & { type: 'step-usage' }>();
      const onEvent = (e: BuildEvent, prefix = '') => {
        metadata?.onEvent(e);
        // A warning reaches stderr even with --quiet: it says the build went on without something asked for.
        if (e.type === 'warning') process.stderr.write(`WARNING: ${prefix}${e.message}\n`);
        // Build checks (BuildKit's wording): stderr, so they stay visible with --quiet as well.
        if (e.type === 'check') process.stderr.write(`${prefix}${checkLine(e.rule, e.line, e.message)}\n`);
        if (quiet) return;
        if (e.type === 'cache-exported') out.write(`${prefix}Pushed ${e.entries} cache ${e.entries === 1 ? 'entry' : 'entries'} to ${e.repository}\n`);
        if (e.type === 'step' && f['explain-cache']) stepText.set(e.step, `STEP ${e.step}/${e.total} ${e.text}`);
        if (e.type === 'cache' && f['explain-cache']) out.write(`${prefix}${stepText.get(e.step) ?? `STEP ${e.step}`}: ${e.hit ? 'hit' : 'miss'}: ${e.reason}\n`);
        if (e.type === 'step') out.write(`${prefix}${style.step(`STEP ${e.step}/${e.total}:`)} ${e.text}${e.cached ? `\n${prefix}${style.dim('--> Using cache')}` : ''}\n`);
        // A RUN's cost (step-usage) comes before its step-done, which prints it on the duration's line.
        if (e.type === 'step-usage') usage.set(`${prefix}${e.step}`, e);
        // Durations of the steps that ran (FROM and instant config steps under 0.1 s stay quiet).
        if (e.type === 'step-done' && e.ms >= 100) out.write(`${prefix}${style.dim(`--> ${(e.ms / 1000).toFixed(1)}s${costText(usage.get(`${prefix}${e.step}`))}`)}\n`);
      };
      const common = {
        store,
        snapshotter: await this.snapshotter(),
        context,
        ...dockerfile,
        tags: f.tag ?? [],
        buildArgs,
        ...(f.target !== undefined ? { target: f.target } : {}),
        ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
        noCache: f['no-cache'],
        layers: f.layers,
        squash: f.squash,
        format: f.format as 'oci' | 'docker',
        ...(f.label ? { labels: keyValues(f.label, '--label') } : {}),
        ...(f.annotation ? { annotations: keyValues(f.annotation, '--annotation') } : {}),
        disableCompression: f['disable-compression'],
        compression: { format: f['compression-format'] as 'gzip' | 'zstd', ...(f['compression-level'] !== undefined ? { level: f['compression-level'] } : {}) },
        runtime: await runtimeOptions(f),
        pull: f.pull as 'missing' | 'always' | 'never',
        secrets: secrets(f.secret ?? []),
        ...(f['cache-to'] !== undefined ? { cacheTo: f['cache-to'] } : {}),
        ...(f['cache-from'] !== undefined ? { cacheFrom: f['cache-from'] } : {}),
        registry: async () => {
          const client = await registryClient(f, ProgressPrinter.forStream(quiet).onProgress);
          clients.push(client);
          return client;
        },
        stdout: out,
        stderr: process.stderr,
        signal: controller.signal,
      };
      if (f.check) {
        const findings = await checkBuild({ ...common, ...(platforms.length === 1 ? { platform: platforms[0]! } : {}) });
        for (const c of findings) print(`${checkLine(c.rule, c.line, c.message)}\n`);
        if (findings.length > 0) process.exitCode = 1;
        return;
      }
      if (multi) {
        const list = f['all-platforms'] ? await allPlatforms(common) : platforms;
        const r = await buildPlatforms({
          ...common,
          platforms: list,
          ...(f.manifest !== undefined ? { manifest: f.manifest } : {}),
          ...(f.jobs !== undefined ? { jobs: f.jobs } : {}),
          onEvent: (e, p) => onEvent(e, `[${formatPlatform(p)}] `),
        });
        if (!quiet) {
          for (const { platform, result } of r.images) out.write(`--> ${formatPlatform(platform)}: ${shortId(result.imageId)}\n`);
          out.write(`${r.names.length > 0 ? `COMMIT manifest list ${r.names.join(', ')}` : 'COMMIT manifest list'} (${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
        }
        print(`${digestHex(r.list.digest)}\n`);
        if (f.iidfile) await writeFile(f.iidfile, r.list.digest);
        return;
      }
      // What outlives the build (its logs, a failed step's state) goes into a record of its own.
      const record = await new BuildRecords(store.root).create();
      const result = await build({ ...common, record, ...(platforms.length === 1 ? { platform: platforms[0]! } : {}), onEvent: (e) => onEvent(e) }).catch(async (e: unknown) => {
        if (f['on-error'] === 'shell') await shellOnError(store, common.snapshotter, record, e);
        throw e;
      });
      if (!quiet) {
        if (result.names.length > 0) out.write(`COMMIT ${result.names.join(', ')}\n`);
        out.write(`--> ${shortId(result.imageId)} (${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
        for (const n of result.names) out.write(`Successfully tagged ${n}\n`);
      }
      print(`${digestHex(result.imageId)}\n`);
      if (f.iidfile) await writeFile(f.iidfile, result.imageId);
      if (metadata) await writeMetadata(f['metadata-file']!, JSON.stringify(metadata.finish(result), null, 2));
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await rm(scratch, { recursive: true, force: true });
      for (const c of clients) await c.close();
    }
  }
}

/** --on-error=shell: the failed step's shell, when the build kept one; the build's error follows it. */
async function shellOnError(store: Parameters<typeof enterRecord>[0], snapshotter: Parameters<typeof enterRecord>[1], record: Parameters<typeof enterRecord>[2], e: unknown): Promise<void> {
  if (!(await readKeptState(record))) return;
  process.stderr.write(`Error: ${(e as Error).message}\nEntering the failed step (exit the shell to end the build)\n`);
  await enterRecord(store, snapshotter, record, {});
}

/**
 * --platform values, each comma-separated list split and normalised (linux/aarch64 is
 * linux/arm64/v8), duplicates dropped. A malformed one is a usage error: one line, exit status 2.
 */
function platformList(values: string[]): Platform[] {
  const out: Platform[] = [];
  for (const v of values.flatMap((x) => x.split(','))) {
    const p = platformFlag(parsePlatform, v);
    if (!out.some((q) => formatPlatform(q) === formatPlatform(p))) out.push(p);
  }
  return out;
}

/** A build check's finding as BuildKit prints it: `Warning: Dockerfile:LINE: RULE: message`. */
function checkLine(rule: string, line: number, message: string): string {
  return `Warning: Dockerfile:${line}: ${rule}: ${message}`;
}

function setArg(out: Record<string, string>, a: string, where: string): void {
  const eq = a.indexOf('=');
  if (eq === 0) throw new InvalidArgumentError(`${where} ${a}: want KEY=VALUE`);
  if (eq < 0) {
    // docker: a bare KEY takes its value from the environment, and is skipped when unset
    const v = process.env[a];
    if (v !== undefined) out[a] = v;
    return;
  }
  out[a.slice(0, eq)] = a.slice(eq + 1);
}

/** `--secret id=ID,src=PATH` (or `env=VAR`; `type=file|env` accepted), as buildah and docker take it. */
function secrets(list: string[]): Record<string, { src: string } | { env: string }> {
  const out: Record<string, { src: string } | { env: string }> = {};
  for (const spec of list) {
    const kv = new Map<string, string>();
    for (const part of spec.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`--secret ${spec}: want id=ID,src=PATH or id=ID,env=VAR`);
      kv.set(part.slice(0, eq), part.slice(eq + 1));
    }
    const id = kv.get('id');
    if (!id) throw new InvalidArgumentError(`--secret ${spec}: id= is required`);
    for (const k of kv.keys()) if (!['id', 'src', 'source', 'env', 'type'].includes(k)) throw new InvalidArgumentError(`--secret ${spec}: unknown key ${k}`);
    const src = kv.get('src') ?? kv.get('source');
    const type = kv.get('type') ?? (src !== undefined ? 'file' : kv.has('env') ? 'env' : 'file');
    if (type === 'env') out[id] = { env: kv.get('env') ?? src ?? id };
    else if (type === 'file') out[id] = { src: path.resolve(src ?? id) };
    else throw new InvalidArgumentError(`--secret ${spec}: type=${type}: want file or env`);
  }
  return out;
}

function keyValues(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`${flag} ${kv}: want KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/**
 * At most `max` bytes of a stream as UTF-8: a Dockerfile on stdin is read only one byte past its
 * limit (the builder refuses it then, naming the line), never whole, however much is sent.
 */
async function readCapped(stream: Readable, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    chunks.push(chunk.subarray(0, max - n));
    n += Math.min(chunk.length, max - n);
    if (n >= max) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Written whole or not at all: a reader never sees half a file. */
async function writeMetadata(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, `${text}\n`);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new InvalidArgumentError(`--metadata-file ${file}: cannot write it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** `, cpu 4.1s, peak 812 MB` (decimal MB, as docker stats): what the step's cgroup counted. */
export function costText(u: { cpuMs?: number; peakMemoryBytes?: number } | undefined): string {
  if (u === undefined) return '';
  return `${u.cpuMs !== undefined ? `, cpu ${(u.cpuMs / 1000).toFixed(1)}s` : ''}${u.peakMemoryBytes !== undefined ? `, peak ${Math.round(u.peakMemoryBytes / 1e6)} MB` : ''}`;
}

function devNull(): Writable {
  return new Writable({ write: (_chunk, _enc, cb) => cb() });
}
