import { DockerfileParser } from 'dockerfile-ast';
import {
  type ErrorCode,
  AlreadyExistsError,
  CancelledError,
  DataLossError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  TsbuildError,
  UnavailableError,
} from '@tsbuild/oci';
import { splitRaw } from './expand.js';
import { LIMITS_DIRECTIVE, type StepLimits, parseStepLimits } from './step-limits.js';

/**
 * A Dockerfile as the builder sees it: stages of instructions, each with its logical argument
 * text (line continuations joined, comment and empty lines inside them dropped, as the
 * Dockerfile reference says), its leading `--flags`, and the exec-form array when the arguments
 * are a JSON array of strings. dockerfile-ast finds instruction boundaries, directives and line
 * numbers; the semantics (expansion, flags, forms) are ours.
 */
export interface Instruction {
  keyword: string;
  /** 1-based line of the instruction's first line, for `Dockerfile:LINE` in errors. */
  line: number;
  /** 1-based column of the keyword on that line. */
  column: number;
  /** The instruction's physical lines as written (continuations, heredoc bodies), to locate text in errors. */
  source: string[];
  /** Arguments after flags, continuations joined. */
  args: string;
  /** Leading `--name=value` / `--name` flags; repeated flags keep every value. */
  flags: Map<string, string[]>;
  /** The exec form (`["a", "b"]`), when args parse as a JSON array of strings. */
  json?: string[];
  /** `KEYWORD args` on one line, as history's created_by shows it. */
  text: string;
  /** Here-documents (`<<EOF` … `EOF`) of RUN, COPY and ADD, in the order their markers appear. */
  heredocs?: Heredoc[];
  /** This step's own cgroup limits: a `# tsbuild:limits …` comment among the lines right above it. */
  limits?: StepLimits;
}

export interface Heredoc {
  name: string;
  /** The body, with a trailing newline per line; `<<-` strips leading tabs. */
  content: string;
  /** False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no variable expansion in the body. */
  expand: boolean;
}

export interface Stage {
  index: number;
  /** The `AS name`, lower-cased as docker treats stage names. */
  name?: string;
  from: Instruction;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  file: string;
  escape: string;
  /** The `# check=` directive (BuildKit's build-check settings, see lint/directive.ts). */
  check?: string;
  /** The file's physical lines: build checks read the comment above an instruction. */
  lines?: string[];
  /** ARG instructions before the first FROM. */
  globalArgs: Instruction[];
  stages: Stage[];
}

/**
 * The largest Dockerfile tsbuild reads: 1 MiB. Real ones are far smaller (a few hundred lines,
 * tens of KB), and parsing costs: dockerfile-ast took ~12 s of CPU and ~300 MB per MiB of long
 * lines of short words (measured on this machine), so a 10 GB file must be refused unread.
 */
export const MAX_DOCKERFILE_SIZE = 1 << 20;

/**
 * The longest instruction line, continuations joined (here-document bodies excluded): 256 KiB.
 * Twice what any command can receive: the kernel refuses one argument longer than MAX_ARG_STRLEN
 * (128 KiB) at execve, so a longer shell-form RUN could not run anyway; and everything else done
 * with an instruction (splitting, expansion) is then bounded by it.
 */
export const MAX_LINE_LENGTH = 256 << 10;

export const KEYWORDS = new Set([
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);

/** The leading `--flags` each instruction takes (the Dockerfile reference's, for this builder). */
export const FLAGS: Record<string, readonly string[]> = {
  FROM: ['platform'],
  RUN: ['mount', 'network', 'security'],
  COPY: ['from', 'chown', 'chmod', 'link', 'parents', 'exclude'],
  ADD: ['chown', 'chmod', 'checksum', 'link', 'keep-git-dir', 'exclude'],
  HEALTHCHECK: ['interval', 'timeout', 'start-period', 'start-interval', 'retries'],
};

/**
 * An error in a Dockerfile: `FILE:LINE: message`, or `FILE:LINE:COLUMN: message` when the
 * offending text could be located on its line.
 */
export class DockerfileError extends InvalidArgumentError {
  constructor(file: string, line: number, message: string, column?: number) {
    super(`${file}:${line}${column !== undefined ? `:${column}` : ''}: ${message}`);
  }

  /** An error at the first place `needle` appears in the instruction (else at its keyword). */
  static at(file: string, ins: Pick<Instruction, 'line' | 'column' | 'source'>, needle: string | undefined, message: string): DockerfileError {
    const pos = locate(ins, needle);
    return new DockerfileError(file, pos.line, message, pos.column);
  }
}

const KINDS: Record<ErrorCode, new (message: string, options?: { cause?: unknown }) => TsbuildError> = {
  NOT_FOUND: NotFoundError,
  ALREADY_EXISTS: AlreadyExistsError,
  INVALID_ARGUMENT: InvalidArgumentError,
  FAILED_PRECONDITION: FailedPreconditionError,
  UNAVAILABLE: UnavailableError,
  DATA_LOSS: DataLossError,
  CANCELLED: CancelledError,
  INTERNAL: TsbuildError,
};

/** Errors made by atLine: they name their line already. */
const LOCATED = new WeakSet<Error>();

/**
 * `err` with `prefix` before its message and its kind kept (STYLE.md: wrap with context, keep the
 * kind): a NotFoundError stays one, a system error keeps its code (ENOSPC), so callers and the
 * CLI still tell what failed. Cancellations, and errors of neither sort (bugs, which must stay
 * visible as such), come back as they are.
 */
export function withContext(err: unknown, prefix: string): unknown {
  if (!(err instanceof Error) || err instanceof CancelledError) return err;
  const message = `${prefix}: ${err.message}`;
  if (err instanceof TsbuildError) return new KINDS[err.code](message, { cause: err });
  const { code, errno, syscall, path } = err as NodeJS.ErrnoException;
  if (typeof code !== 'string') return err;
  return Object.assign(new Error(message, { cause: err }), {
    code,
    ...(errno !== undefined ? { errno } : {}),
    ...(syscall !== undefined ? { syscall } : {}),
    ...(path !== undefined ? { path } : {}),
  });
}

/**
 * `err` as raised by the instruction at `line`: `FILE:LINE: ` (and `what: `, when given) before its
 * message, its kind kept (see withContext). An error that names its line already (a
 * DockerfileError, one made here) comes back as it is, so no line is ever named twice.
 */
export function atLine(file: string, line: number, err: unknown, what?: string): unknown {
  if (err instanceof DockerfileError || (err instanceof Error && LOCATED.has(err))) return err;
  const out = withContext(err, `${file}:${line}${what !== undefined ? `: ${what}` : ''}`);
  if (out !== err) LOCATED.add(out as Error);
  return out;
}

/** Line and 1-based column of `needle` in an instruction's text; its keyword when absent. */
export function locate(ins: Pick<Instruction, 'line' | 'column' | 'source'>, needle: string | undefined): { line: number; column: number } {
  if (needle !== undefined && needle !== '') {
    for (const [k, l] of ins.source.entries()) {
      const i = l.indexOf(needle);
      if (i >= 0) return { line: ins.line + k, column: i + 1 };
    }
  }
  return { line: ins.line, column: ins.column };
}

/**
 * Refuses content over MAX_DOCKERFILE_SIZE, naming the line where the limit falls. Readers stop
 * reading one byte past the limit and hand over what they have, so this is the one check.
 */
function checkSize(content: string, file: string): void {
  if (content.length <= MAX_DOCKERFILE_SIZE / 3 || Buffer.byteLength(content) <= MAX_DOCKERFILE_SIZE) return;
  const head = Buffer.from(content).subarray(0, MAX_DOCKERFILE_SIZE);
  let line = 1;
  for (let i = head.indexOf(10); i >= 0; i = head.indexOf(10, i + 1)) line++;
  throw new DockerfileError(file, line, `the Dockerfile is larger than ${MAX_DOCKERFILE_SIZE >> 20} MiB, the most tsbuild reads`);
}

export function parseDockerfile(content: string, file = 'Dockerfile'): ParsedDockerfile {
  checkSize(content, file);
  const df = DockerfileParser.parse(content);
  const escape = df.getEscapeCharacter();
  // `# syntax=` names a BuildKit frontend image; this builder is its own frontend and ignores it.
  const check = df.getDirectives().find((d) => d.getName().toLowerCase() === 'check')?.getValue();
  if (check !== undefined && check !== '' && !/^(skip=[^;]*|error=(true|false))(;(skip=[^;]*|error=(true|false)))*$/i.test(check.trim())) {
    throw new DockerfileError(file, 1, `# check=${check}: want skip=RULE,…;error=true|false`, 1);
  }
  const lines = content.split(/\r?\n/);
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  /** The 0-based line after the previous instruction (its continuations and here-documents). */
  let after = 0;
  for (const ins of df.getInstructions()) {
    const range = ins.getRange();
    const limits = stepLimits(lines, after, range.start.line, file);
    after = range.end.line + 1;
    const line = range.start.line + 1;
    const column = range.start.character + 1;
    const keyword = ins.getKeyword().toUpperCase();
    const physical = lines.slice(range.start.line, range.end.line + 1);
    if (!KEYWORDS.has(keyword)) throw new DockerfileError(file, line, `unknown instruction: ${physical[0]!.trim().split(/\s+/)[0]}`, column);
    const { logical, used } = joinContinuations(physical, escape);
    if (logical.length > MAX_LINE_LENGTH) throw new DockerfileError(file, line, `${keyword}: the instruction is longer than ${MAX_LINE_LENGTH >> 10} KiB`, column);
    const where = { line, column, source: physical };
    const heredocs = HEREDOC_KEYWORDS.has(keyword) ? readHeredocs(logical, physical.slice(used), where, file) : [];
    const rest = logical.replace(/^\s*\S+/, '').trim();
    const { flags, args } = FLAGS[keyword] ? takeFlags(rest, escape) : { flags: new Map<string, string[]>(), args: rest };
    for (const f of flags.keys()) {
      if (FLAGS[keyword]!.includes(f)) continue;
      const hint = f === 'from' && keyword === 'ADD' ? ' (use COPY --from)' : '';
      throw DockerfileError.at(file, where, `--${f}`, `unknown flag: ${keyword} --${f}${hint} (${keyword} takes ${FLAGS[keyword]!.map((x) => `--${x}`).join(', ')})`);
    }
    const parsed: Instruction = { keyword, line, column, source: physical, args, flags, text: `${keyword} ${rest}`.trim() };
    if (heredocs.length > 0) parsed.heredocs = heredocs;
    if (limits !== undefined) {
      if (keyword !== 'RUN') throw new DockerfileError(file, limits.line, `# tsbuild:limits applies to a RUN step, not to ${keyword} on line ${line}`);
      parsed.limits = limits;
    }
    const json = parseJsonForm(args);
    if (json) parsed.json = json;
    if (keyword === 'FROM') {
      const words = splitRaw(args, escape);
      if (words.length !== 1 && !(words.length === 3 && words[1]!.toUpperCase() === 'AS')) {
        throw new DockerfileError(file, line, 'FROM requires either one or three arguments (FROM image [AS name])');
      }
      const stage: Stage = { index: stages.length, from: parsed, instructions: [] };
      if (words.length === 3) stage.name = words[2]!.toLowerCase();
      stages.push(stage);
      continue;
    }
    const current = stages.at(-1);
    if (!current) {
      if (keyword !== 'ARG') throw new DockerfileError(file, line, `no build stage in current context: ${keyword} before FROM`);
      globalArgs.push(parsed);
      continue;
    }
    current.instructions.push(parsed);
  }
  if (stages.length === 0) throw new DockerfileError(file, 1, 'file with no instructions: a Dockerfile needs a FROM');
  return { file, escape, globalArgs, stages, lines, ...(check !== undefined ? { check } : {}) };
}

/**
 * The `# tsbuild:limits` directive among the comment lines right above an instruction (from
 * `from`, the line after the previous one, to `at`, its first line; 0-based), if any. A blank
 * line or another instruction between them detaches it, as it would a reader's eye.
 */
function stepLimits(lines: string[], from: number, at: number, file: string): StepLimits | undefined {
  for (let k = at - 1; k >= from; k--) {
    const t = lines[k]!.trim();
    if (!t.startsWith('#')) return undefined;
    const m = LIMITS_DIRECTIVE.exec(t);
    if (m === null) continue;
    try {
      return parseStepLimits(m[1]!, k + 1);
    } catch (e) {
      throw new DockerfileError(file, k + 1, (e as Error).message);
    }
  }
  return undefined;
}

/**
 * Joins an instruction's physical lines: a line ending in the escape character continues on the
 * next; inside a continuation, comment lines and empty lines are dropped. Returns how many
 * physical lines the instruction line took (here-document bodies follow it).
 */
function joinContinuations(physical: string[], escape: string): { logical: string; used: number } {
  let out = '';
  const cont = new RegExp(`${escapeRe(escape)}[ \\t]*$`);
  for (let k = 0; k < physical.length; k++) {
    const l = physical[k]!;
    if (k > 0) {
      const t = l.trim();
      if (t === '' || t.startsWith('#')) continue;
    }
    // At the end of the file a continuation has nothing to continue: BuildKit's parser drops the
    // escape character all the same and takes the line as it is (parser.go, trimContinuationCharacter).
    if (cont.test(l)) {
      out += l.replace(cont, '');
      continue;
    }
    out += l;
    return { logical: out, used: k + 1 };
  }
  return { logical: out, used: physical.length };
}

const HEREDOC_KEYWORDS = new Set(['RUN', 'COPY', 'ADD']);
const HEREDOC_MARKER = /<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;

/**
 * Here-document bodies after an instruction line (Dockerfile 1.4 syntax): one per `<<NAME`
 * marker, in order, each ending at a line that is exactly NAME (after leading tabs with `<<-`).
 */
function readHeredocs(logical: string, rest: string[], where: Pick<Instruction, 'line' | 'column' | 'source'>, file: string): Heredoc[] {
  const out: Heredoc[] = [];
  let k = 0;
  for (const m of logical.matchAll(HEREDOC_MARKER)) {
    const strip = m[1] === '-';
    const name = m[3]!;
    const body: string[] = [];
    let closed = false;
    for (; k < rest.length; k++) {
      const l = strip ? rest[k]!.replace(/^\t+/, '') : rest[k]!;
      if (l === name) {
        closed = true;
        k++;
        break;
      }
      body.push(l);
    }
    if (!closed) throw DockerfileError.at(file, where, m[0], `unterminated heredoc ${m[0]}: no line "${name}" ends it`);
    out.push({ name, content: body.map((l) => `${l}\n`).join(''), expand: m[2] === '' });
  }
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function takeFlags(rest: string, escape: string): { flags: Map<string, string[]>; args: string } {
  const flags = new Map<string, string[]>();
  let args = rest;
  for (;;) {
    const m = /^--([A-Za-z][A-Za-z0-9-]*)(?:=(\S*))?(?:\s+|$)/.exec(args);
    if (!m) break;
    const name = m[1]!;
    const value = m[2] !== undefined ? unquoteFlag(m[2], escape) : 'true';
    flags.set(name, [...(flags.get(name) ?? []), value]);
    args = args.slice(m[0].length);
  }
  return { flags, args: args.trim() };
}

function unquoteFlag(v: string, _escape: string): string {
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) return v.slice(1, -1);
  return v;
}

/** Exec form: the arguments are a JSON array of strings (anything else is shell form). */
export function parseJsonForm(args: string): string[] | undefined {
  const t = args.trim();
  if (!t.startsWith('[')) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // not JSON: shell form
  }
  return undefined;
}
