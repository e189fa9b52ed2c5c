/**
 * The command-line layer: flag and argument definitions, a parser that follows docker's and
 * buildah's conventions (pflag: `--flag value`, `--flag=value`, `-abc`, `-fVALUE`, `--bool=false`,
 * repeated flags, `--` ending flags), usage errors and help.
 *
 * It replaces @oclif/core, measured here: importing @oclif/core took 55–70 ms and its start-up
 * ~90 ms of the 190 ms that `tsbuild images` took; node itself starts in ~50 ms. The shape (static
 * `flags`/`args`, `Flags.string(…)`, `this.parse(Cmd)`) is oclif's, so commands read the same.
 */

import { print } from './print.js';

export interface FlagCommon {
  description?: string;
  char?: string;
  /** Help section: FLAGS unless named (CONTAINER, REGISTRY, GLOBAL …). */
  helpGroup?: string;
  /** Environment variable read when the flag is not given. */
  env?: string;
}

export interface OptionFlag<V> extends FlagCommon {
  readonly type: 'option';
  readonly kind: 'string' | 'integer';
  multiple?: boolean;
  options?: readonly string[];
  default?: string | number;
  required?: boolean;
  min?: number;
  max?: number;
  /** Phantom: the parsed value's type. */
  readonly __value?: V;
}

export interface BooleanFlag<V> extends FlagCommon {
  readonly type: 'boolean';
  /** Accept `--no-NAME`. (`--NAME=false` is always accepted, as pflag does.) */
  allowNo?: boolean;
  default?: boolean;
  readonly __value?: V;
}

export type Flag<V = unknown> = OptionFlag<V> | BooleanFlag<V>;

export interface Arg<V = unknown> {
  description?: string;
  required?: boolean;
  default?: string;
  readonly __value?: V;
}

type StringOpts = FlagCommon & { options?: readonly string[]; required?: boolean; default?: string };
type IntegerOpts = FlagCommon & { required?: boolean; default?: number; min?: number; max?: number };

function string(o: StringOpts & { multiple: true }): OptionFlag<string[] | undefined>;
function string(o: StringOpts & ({ required: true } | { default: string })): OptionFlag<string>;
function string(o?: StringOpts): OptionFlag<string | undefined>;
function string(o: StringOpts & { multiple?: boolean } = {}): OptionFlag<unknown> {
  return { ...o, type: 'option', kind: 'string' };
}

function integer(o: IntegerOpts & ({ required: true } | { default: number })): OptionFlag<number>;
function integer(o?: IntegerOpts): OptionFlag<number | undefined>;
function integer(o: IntegerOpts = {}): OptionFlag<unknown> {
  return { ...o, type: 'option', kind: 'integer' };
}

/** Without a default, a boolean is false when not given, unless it takes --no-NAME: then it is unset. */
function boolean(o: FlagCommon & { allowNo?: boolean; default: boolean }): BooleanFlag<boolean>;
function boolean(o: FlagCommon & { allowNo: true }): BooleanFlag<boolean | undefined>;
function boolean(o?: FlagCommon & { allowNo?: boolean; default?: boolean }): BooleanFlag<boolean>;
function boolean(o: FlagCommon & { allowNo?: boolean; default?: boolean } = {}): BooleanFlag<unknown> {
  return { ...o, type: 'boolean' };
}

export const Flags = { string, integer, boolean };

function argString(o: { description?: string } & ({ required: true } | { default: string })): Arg<string>;
function argString(o?: { description?: string }): Arg<string | undefined>;
function argString(o: { description?: string; required?: boolean; default?: string } = {}): Arg<unknown> {
  return { ...o };
}

export const Args = { string: argString };

export type FlagDefs = Record<string, Flag>;
export type ArgDefs = Record<string, Arg>;
export type InferredFlags<F> = { [K in keyof F]: F[K] extends Flag<infer V> ? V : never };
export type InferredArgs<A> = { [K in keyof A]: A[K] extends Arg<infer V> ? V : never };

/** A usage error (exit status 2) or a command's own error with its status; printed as one line. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** `this.exit(n)`: unwinds the command and leaves with status n. */
export class ExitRequest extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'ExitRequest';
  }
}

/** `--help` anywhere among a command's flags. */
export class HelpRequest extends Error {
  constructor() {
    super('help');
    this.name = 'HelpRequest';
  }
}

export interface ParseSpec {
  flags: FlagDefs;
  args: ArgDefs;
  /** false: positionals beyond `args` are allowed (they all land in `argv`). */
  strict: boolean;
  /**
   * false: flags end at the first positional argument; it and everything after it are
   * positionals, flag-like or not (pflag's SetInterspersed(false): `run IMAGE CMD…`).
   */
  interspersed?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface Parsed {
  flags: Record<string, unknown>;
  args: Record<string, string | undefined>;
  /** Every positional argument, in order. */
  argv: string[];
}

/** The CLI's parser: flags, then defaults and environment, then positional arguments. */
export function parseArgv(argv: readonly string[], spec: ParseSpec): Parsed {
  const byName = new Map(Object.entries(spec.flags));
  const byChar = new Map<string, [string, Flag]>();
  for (const [name, f] of byName) if (f.char) byChar.set(f.char, [name, f]);
  const values: Record<string, unknown> = {};
  const positionals: string[] = [];

  const setOption = (name: string, f: OptionFlag<unknown>, raw: string, spelled: string) => {
    const v = optionValue(name, f, raw, spelled);
    if (f.multiple) ((values[name] ??= []) as unknown[]).push(v);
    else values[name] = v; // repeated: the last one wins, as with pflag
  };

  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a === '--help') throw new HelpRequest();
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const spelled = eq < 0 ? a : a.slice(0, eq);
      const name = spelled.slice(2);
      const inline = eq < 0 ? undefined : a.slice(eq + 1);
      const f = byName.get(name);
      if (f === undefined && name.startsWith('no-')) {
        const base = byName.get(name.slice(3));
        if (base?.type === 'boolean' && base.allowNo && inline === undefined) {
          values[name.slice(3)] = false;
          continue;
        }
      }
      if (f === undefined) throw new CliError(`Nonexistent flag: ${spelled}`, 2);
      if (f.type === 'boolean') {
        if (inline === undefined) values[name] = true;
        else if (/^(true|false)$/i.test(inline)) values[name] = inline.toLowerCase() === 'true';
        else throw new CliError(`${spelled}=${inline}: want true or false`, 2);
        continue;
      }
      if (inline !== undefined) setOption(name, f, inline, spelled);
      else {
        if (i + 1 >= argv.length) throw new CliError(`Flag ${spelled} expects a value`, 2);
        setOption(name, f, argv[++i]!, spelled);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      if (a === '-h') throw new HelpRequest();
      for (let k = 1; k < a.length; k++) {
        const c = a[k]!;
        const hit = byChar.get(c);
        if (hit === undefined) throw new CliError(`Nonexistent flag: -${c}`, 2);
        const [name, f] = hit;
        if (f.type === 'boolean') {
          values[name] = true;
          continue;
        }
        // -fVALUE, -f=VALUE, or -f VALUE
        let raw = a.slice(k + 1);
        if (raw.startsWith('=')) raw = raw.slice(1);
        else if (raw === '') {
          if (i + 1 >= argv.length) throw new CliError(`Flag -${c} expects a value`, 2);
          raw = argv[++i]!;
        }
        setOption(name, f, raw, `-${c}`);
        break;
      }
      continue;
    }
    positionals.push(a);
    if (spec.interspersed === false) {
      positionals.push(...argv.slice(i + 1));
      break;
    }
  }

  const env = spec.env ?? process.env;
  for (const [name, f] of byName) {
    if (values[name] !== undefined) continue;
    const fromEnv = f.env !== undefined ? env[f.env] : undefined;
    if (fromEnv !== undefined && fromEnv !== '') {
      if (f.type === 'boolean') values[name] = /^(1|true|yes)$/i.test(fromEnv);
      else setOption(name, f, fromEnv, `$${f.env}`);
    } else if (f.default !== undefined) values[name] = f.type === 'option' && f.multiple ? [f.default] : f.default;
    else if (f.type === 'boolean' && !f.allowNo) values[name] = false;
    else if (f.type === 'option' && f.required) throw new CliError(`Missing required flag --${name}`, 2);
  }

  const argDefs = Object.entries(spec.args);
  const args: Record<string, string | undefined> = {};
  const missing: string[] = [];
  argDefs.forEach(([name, d], i) => {
    const v = positionals[i] ?? d.default;
    if (v === undefined && d.required) missing.push(name.toUpperCase());
    args[name] = v;
  });
  if (missing.length > 0) throw new CliError(`Missing ${missing.length} required arg${missing.length === 1 ? '' : 's'}: ${missing.join(' ')}`, 2);
  if (spec.strict && positionals.length > argDefs.length) throw new CliError(`Unexpected argument: ${positionals[argDefs.length]}`, 2);
  return { flags: values, args, argv: positionals };
}

function optionValue(name: string, f: OptionFlag<unknown>, raw: string, spelled: string): string | number {
  if (f.options && !f.options.includes(raw)) throw new CliError(`Expected ${spelled}=${raw} to be one of: ${f.options.join(', ')}`, 2);
  if (f.kind === 'string') return raw;
  if (!/^-?\d+$/.test(raw.trim())) throw new CliError(`Expected an integer for --${name} but received: ${raw}`, 2);
  const n = Number(raw);
  if (f.min !== undefined && n < f.min) throw new CliError(`Expected an integer for --${name} of at least ${f.min} but received: ${raw}`, 2);
  if (f.max !== undefined && n > f.max) throw new CliError(`Expected an integer for --${name} of at most ${f.max} but received: ${raw}`, 2);
  return n;
}

export const BIN = 'tsbuild';

/**
 * A command: static `summary`, `description`, `examples` (`<%= config.bin %>` stands for the
 * program name, as in oclif), `args`, `flags`, `baseFlags`, `strict`; `run()` does the work.
 * Arguments are parsed in `init()`, before `run()`; `parse()` returns that result.
 */
export abstract class Command {
  static id = '';
  static summary?: string;
  static description?: string;
  static examples?: string[];
  static args: ArgDefs = {};
  static flags: FlagDefs = {};
  static baseFlags: FlagDefs = {};
  static strict = true;
  /**
   * For `run IMAGE CMD…`: everything after the first argument is the container's command, never
   * tsbuild's flags (docker's rule), and is kept in `passThrough`.
   */
  static passThroughAfterFirstArg = false;

  protected parsed?: Parsed;
  protected passThrough: string[] = [];

  constructor(public argv: string[]) {}

  get ctor(): typeof Command {
    return this.constructor as typeof Command;
  }

  /** Parses argv against the command's definitions. */
  async init(): Promise<void> {
    const c = this.ctor;
    const pass = c.passThroughAfterFirstArg;
    this.parsed = parseArgv(this.argv, { flags: { ...c.baseFlags, ...c.flags }, args: c.args, strict: c.strict && !pass, interspersed: !pass });
    if (pass) this.passThrough = this.parsed.argv.slice(1);
  }

  abstract run(): Promise<unknown>;

  async parse<C extends typeof Command>(
    _c?: C,
    _argv?: string[],
  ): Promise<{ args: InferredArgs<C['args']>; flags: InferredFlags<C['baseFlags'] & C['flags']>; argv: string[] }> {
    if (this.parsed === undefined) await this.init();
    return this.parsed as unknown as { args: InferredArgs<C['args']>; flags: InferredFlags<C['baseFlags'] & C['flags']>; argv: string[] };
  }

  /** Leaves the command with this exit status. */
  exit(code = 0): never {
    throw new ExitRequest(code);
  }

  /** One line on stderr, then exit status `exit` (default 1). */
  error(message: string, opts: { exit?: number } = {}): never {
    throw new CliError(message, opts.exit ?? 1);
  }

  /** Errors `run()` throws; the default rethrows them for the entry point to report. */
  protected async catch(err: Error): Promise<unknown> {
    throw err;
  }

  /** Runs the command on argv; resolves to the exit status. */
  static async run(this: typeof Command, argv: string[]): Promise<number> {
    const cmd = new (this as unknown as new (argv: string[]) => Command)(argv);
    try {
      try {
        await cmd.init();
        await cmd.run();
      } catch (e) {
        await cmd.catch(e as Error);
      }
      return typeof process.exitCode === 'number' ? process.exitCode : 0;
    } catch (e) {
      if (e instanceof HelpRequest) {
        print(commandHelp(this));
        return 0;
      }
      return report(e, this.id);
    }
  }
}

/** TSBUILD_DEBUG=1: errors are printed with their stack traces (and causes), for a bug report. */
export function debugEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TSBUILD_DEBUG === '1';
}

/** Prints what an error means for the user, as one line on stderr, and gives the exit status. */
export function report(e: unknown, id: string): number {
  if (e instanceof ExitRequest) return e.exitCode;
  const debug = debugEnabled();
  if (e instanceof CliError) {
    const hint = e.exitCode === 2 && id ? ` (see: ${BIN} ${id} --help)` : '';
    process.stderr.write(`Error: ${oneLine(e.message)}${hint}\n`);
    if (debug && e.cause instanceof Error && e.cause.stack !== undefined) process.stderr.write(`${e.cause.stack}\n`);
    return e.exitCode;
  }
  process.stderr.write(`Error: ${internalError(e, debug)}\n`);
  return 1;
}

/**
 * An error that is not one of ours (a bug, or a library's error nothing mapped): its name, code
 * and message on one line, like every other error; the stack trace only with TSBUILD_DEBUG=1,
 * where it is worth its lines.
 */
export function internalError(e: unknown, debug = debugEnabled()): string {
  if (!(e instanceof Error)) return `internal error: ${oneLine(String(e))}`;
  if (debug && e.stack !== undefined) return `internal error: ${e.stack}`;
  const code = (e as NodeJS.ErrnoException).code;
  const kind = `${e.name}${typeof code === 'string' ? ` [${code}]` : ''}`;
  return `internal error: ${kind}: ${oneLine(e.message)} (set TSBUILD_DEBUG=1 for a stack trace)`;
}

/** A message made one line: a multi-line one (from a library, a registry) has its lines joined. */
export function oneLine(message: string): string {
  return message.trim().replace(/\s*\n\s*/g, ' ');
}

/** `tsbuild CMD --help`. */
export function commandHelp(c: typeof Command, width = helpWidth()): string {
  const flags: FlagDefs = { ...c.flags, ...c.baseFlags };
  const argNames = Object.entries(c.args).map(([n, a]) => (a.required ? n.toUpperCase() : `[${n.toUpperCase()}]`));
  const more = c.strict ? '' : '...';
  let out = c.summary ? `${c.summary}\n\n` : '';
  out += `USAGE\n  $ ${BIN} ${c.id}${argNames.length ? ` ${argNames.join(' ')}${more}` : ''} [FLAGS]\n`;
  const args = Object.entries(c.args);
  if (args.length > 0) {
    out += '\nARGUMENTS\n';
    out += columns(args.map(([n, a]) => [n.toUpperCase(), `${a.description ?? ''}${a.default !== undefined ? ` [default: ${a.default}]` : ''}`]), width);
  }
  const groups = new Map<string, [string, Flag][]>();
  for (const [n, f] of Object.entries(flags)) {
    const g = f.helpGroup ?? '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push([n, f]);
  }
  const order = ['', ...[...groups.keys()].filter((g) => g !== '' && g !== 'GLOBAL'), 'GLOBAL'];
  for (const g of order) {
    const list = groups.get(g);
    if (!list) continue;
    out += `\n${g ? `${g} ` : ''}FLAGS\n`;
    out += columns(flagRows(list), width);
  }
  if (c.description) out += `\nDESCRIPTION\n${wrap(c.description, width - 2, '  ')}\n`;
  if (c.examples?.length) out += `\nEXAMPLES\n${c.examples.map((e) => `  $ ${e.replaceAll('<%= config.bin %>', BIN)}`).join('\n')}\n`;
  return out;
}

function flagRows(list: [string, Flag][]): string[][] {
  return list.map(([n, f]) => {
    const lhs = `${f.char ? `-${f.char}, ` : '    '}--${f.type === 'boolean' && f.allowNo ? `[no-]${n}` : n}${f.type === 'option' ? (f.options ? `=${f.options.join('|')}` : `=<${f.kind === 'integer' ? 'n' : 'value'}>`) : ''}${f.type === 'option' && f.multiple ? '...' : ''}`;
    const notes = [f.default !== undefined && f.type === 'option' ? `[default: ${f.default}]` : '', f.env ? `[env: ${f.env}]` : ''].filter(Boolean).join(' ');
    return [lhs, `${f.description ?? ''}${notes ? ` ${notes}` : ''}`];
  });
}

/** `tsbuild --help`: the commands and their summaries, and the flags every command takes. */
export function rootHelp(commands: [id: string, summary: string][], version: string, globalFlags: FlagDefs = {}, width = helpWidth()): string {
  let out = `tsbuild ${version}: build, run, push and pull container images without a daemon\n\n`;
  const globals = Object.entries(globalFlags);
  const g = globals.length > 0 ? '[GLOBAL FLAGS] ' : '';
  out += `USAGE\n  $ ${BIN} ${g}COMMAND [FLAGS]\n  $ ${BIN} COMMAND --help\n\nCOMMANDS\n`;
  out += columns(commands, width);
  if (globals.length > 0) out += `\nGLOBAL FLAGS (before or after the command)\n${columns(flagRows(globals), width)}`;
  return out;
}

function helpWidth(): number {
  return Math.max(60, Math.min(process.stdout.columns || 100, 120));
}

function columns(rows: string[][], width: number): string {
  const left = Math.min(Math.max(...rows.map((r) => r[0]!.length)), 40);
  return rows
    .map(([l, r]) => {
      const pad = l!.length > left ? `\n${' '.repeat(left + 4)}` : ' '.repeat(left - l!.length + 2);
      return `  ${l}${pad}${wrap(r!, width - left - 4, ' '.repeat(left + 4)).trimStart()}`;
    })
    .join('\n')
    .concat('\n');
}

function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l) => indent + l).join('\n');
}
