import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Args, Flags } from '@oclif/core';
import { InvalidArgumentError, digestHex, shortId } from '@tsbuild/oci';
import { build } from '@tsbuild/builder';
import { BaseCommand } from '../base-command.js';

export default class Build extends BaseCommand<typeof Build> {
  static override summary = 'Build an image from a Dockerfile';
  static override description =
    'Runs each instruction of the Dockerfile in CONTEXT (default: the current directory) and stores the resulting image. ' +
    'RUN steps run in their own mount, PID, UTS and IPC namespaces on an overlay of the image built so far; each RUN, COPY ' +
    'and directory-creating WORKDIR adds one layer.';
  static override examples = ['<%= config.bin %> build -t hello fixtures/hello', '<%= config.bin %> build -f ci/Dockerfile -t app:1 --build-arg VERSION=1 .'];
  static override args = { context: Args.string({ description: 'build context directory', default: '.' }) };
  static override flags = {
    file: Flags.string({ char: 'f', description: 'Dockerfile path (default: CONTEXT/Dockerfile)' }),
    tag: Flags.string({ char: 't', description: 'name for the image (repeatable)', multiple: true, multipleNonGreedy: true }),
    'build-arg': Flags.string({ description: 'ARG value, KEY=VALUE (repeatable)', multiple: true, multipleNonGreedy: true }),
    target: Flags.string({ description: 'build this stage and the stages it needs' }),
    timestamp: Flags.integer({ description: 'seconds since the epoch for created times and file mtimes (reproducible builds); default $SOURCE_DATE_EPOCH' }),
    iidfile: Flags.string({ description: 'write the image ID to this file' }),
    quiet: Flags.boolean({ char: 'q', description: 'print only the image ID' }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Build);
    const f = this.flags;
    const buildArgs: Record<string, string> = {};
    for (const a of f['build-arg'] ?? []) {
      const eq = a.indexOf('=');
      if (eq <= 0) {
        // docker: a bare KEY takes its value from the environment
        const v = process.env[a];
        if (eq === 0 || v === undefined) throw new InvalidArgumentError(`--build-arg ${a}: want KEY=VALUE`);
        buildArgs[a] = v;
      } else buildArgs[a.slice(0, eq)] = a.slice(eq + 1);
    }
    let epoch = f.timestamp;
    if (epoch === undefined && process.env.SOURCE_DATE_EPOCH) {
      epoch = Number(process.env.SOURCE_DATE_EPOCH);
      if (!Number.isInteger(epoch)) throw new InvalidArgumentError(`SOURCE_DATE_EPOCH=${process.env.SOURCE_DATE_EPOCH}: want whole seconds`);
    }
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const quiet = f.quiet;
    const started = Date.now();
    try {
      const result = await build({
        store: await this.store(),
        snapshotter: await this.snapshotter(),
        context: path.resolve(args.context),
        ...(f.file !== undefined ? { dockerfile: path.resolve(f.file) } : {}),
        tags: f.tag ?? [],
        buildArgs,
        ...(f.target !== undefined ? { target: f.target } : {}),
        ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
        ...(quiet ? { stdout: devNull(), stderr: process.stderr } : { stdout: process.stdout, stderr: process.stderr }),
        signal: controller.signal,
        onEvent: (e) => {
          if (quiet) return;
          if (e.type === 'step') process.stdout.write(`STEP ${e.step}/${e.total}: ${e.text}\n`);
        },
      });
      if (!quiet) {
        if (result.names.length > 0) process.stdout.write(`COMMIT ${result.names.join(', ')}\n`);
        process.stdout.write(`--> ${shortId(result.imageId)} (${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
        for (const n of result.names) process.stdout.write(`Successfully tagged ${n}\n`);
      }
      process.stdout.write(`${digestHex(result.imageId)}\n`);
      if (f.iidfile) await writeFile(f.iidfile, result.imageId);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}

function devNull(): Writable {
  return new Writable({ write: (_chunk, _enc, cb) => cb() });
}
