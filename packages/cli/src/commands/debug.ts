import { isatty } from 'node:tty';
import path from 'node:path';
import { BuildRecords, type BuildRecord, enterKeptState, listKeptStates } from '@tsbuild/builder';
import type { Store } from '@tsbuild/store';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { InvalidArgumentError } from '@tsbuild/oci';
import { Args, CliError, Flags } from '../cli-kit.js';
import { BaseCommand } from '../base-command.js';
import { runtimeFlags, runtimeOptions } from '../run-flags.js';
import { print } from '../print.js';

export default class Debug extends BaseCommand<typeof Debug> {
  static override summary = 'Open a shell in the failed step of a build (or in the state before one of its steps)';
  static override description =
    'A failed RUN of `tsbuild build` keeps its state: the files the command wrote up to its failure, its environment, ' +
    'working directory, user and RUN --mount cache, bind (from the context) and tmpfs mounts. `tsbuild debug` opens ' +
    '/bin/sh there (a terminal when stdin is one), or runs the command after `--` (the exit status is the command\'s). ' +
    'What the session changes is dropped after it: the next `debug` finds the state as the build left it. Secrets are ' +
    'never kept: give them again with --secret. --from-step N enters the state before step N instead (the result of the ' +
    'step before it, from the build cache). `tsbuild prune` removes kept states. Flags go before BUILD-ID: what follows it is the command.';
  static override passThroughAfterFirstArg = true;
  static override examples = ['<%= config.bin %> debug last', '<%= config.bin %> debug last -- cat /var/log/x', '<%= config.bin %> debug --from-step 3 last', '<%= config.bin %> debug --list'];
  static override args = {
    build: Args.string({ description: 'build ID (or a unique prefix), or last (default)' }),
    command: Args.string({ description: 'command and arguments after --, passed as they are (default: /bin/sh)' }),
  };
  static override flags = {
    list: Flags.boolean({ description: 'list the kept failed steps: build ID, step, when' }),
    'from-step': Flags.integer({ description: 'enter the state before step N of the build (as STEP N/… numbered it)', min: 1 }),
    secret: Flags.string({ description: 'a secret the step mounted, given again: id=ID,src=PATH (repeatable)', multiple: true }),
    ...runtimeFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Debug, this.argv);
    const f = this.flags;
    const store = await this.store();
    const records = new BuildRecords(store.root);
    if (f.list) {
      if (args.build !== undefined) throw new CliError('--list takes no build', 2);
      for (const s of await listKeptStates(records)) print(`${s.build}  step ${s.step}: ${s.text}  ${s.failedAt}\n`);
      return;
    }
    let id = args.build ?? 'last';
    let command = this.passThrough;
    if (id === '--') {
      id = 'last';
      command = this.passThrough.slice(0);
    } else if (command[0] === '--') command = command.slice(1);
    else if (command[0]?.startsWith('-')) {
      // Everything after the build is the command (as `tsbuild run`): a flag there would run as one.
      throw new CliError(`${command[0]}: flags go before the build (tsbuild debug [FLAGS] [BUILD-ID|last] [-- COMMAND...])`, 2);
    }
    const record = await records.open(id);
    process.exitCode = await enterRecord(store, await this.snapshotter(), record, {
      command,
      ...(f['from-step'] !== undefined ? { fromStep: f['from-step'] } : {}),
      secrets: secretFiles(f.secret ?? []),
      runtime: await runtimeOptions(f),
    });
  }
}

/**
 * Runs `command` (a shell by default) in a record's kept state: interactive, in a terminal when
 * stdin and stdout are one (as `tsbuild run -it`). Resolves to the command's exit status.
 * `tsbuild build --on-error=shell` comes here too.
 */
export async function enterRecord(
  store: Store,
  snapshotter: OverlaySnapshotter,
  record: BuildRecord,
  opts: { command?: string[]; fromStep?: number; secrets?: Record<string, string>; runtime?: Parameters<typeof enterKeptState>[0]['runtime'] },
): Promise<number> {
  // isatty(0), not process.stdin.isTTY: creating process.stdin makes fd 0 non-blocking.
  const tty = isatty(0) && isatty(1);
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGTERM', onSignal);
  // In a terminal ^C goes to the shell through its pty; otherwise it ends the session.
  if (!tty) process.once('SIGINT', onSignal);
  try {
    const r = await enterKeptState({
      store,
      snapshotter,
      record,
      ...(opts.command && opts.command.length > 0 ? { command: opts.command } : {}),
      ...(opts.fromStep !== undefined ? { fromStep: opts.fromStep } : {}),
      ...(opts.secrets ? { secrets: opts.secrets } : {}),
      ...(opts.runtime ? { runtime: opts.runtime } : {}),
      stdin: 'inherit',
      ...(tty ? { terminal: { sizeFrom: process.stdout } } : {}),
      signal: controller.signal,
      warn: (m) => process.stderr.write(`warning: ${m}\n`),
    });
    return r.exitCode;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

/** `--secret id=ID,src=PATH` as `tsbuild build` takes it (files only: a debug session reads no build's environment). */
function secretFiles(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const spec of list) {
    const kv = new Map<string, string>();
    for (const part of spec.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new InvalidArgumentError(`--secret ${spec}: want id=ID,src=PATH`);
      kv.set(part.slice(0, eq), part.slice(eq + 1));
    }
    const id = kv.get('id');
    const src = kv.get('src') ?? kv.get('source');
    if (!id || src === undefined) throw new InvalidArgumentError(`--secret ${spec}: want id=ID,src=PATH`);
    out[id] = path.resolve(src);
  }
  return out;
}
