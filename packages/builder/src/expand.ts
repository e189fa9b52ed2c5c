import { InvalidArgumentError } from '@tsbuild/oci';

/**
 * Variable substitution and word splitting as the Dockerfile reference describes them (the same
 * rules as docker's shell lexer): `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
 * `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`; single quotes are literal, double quotes allow
 * expansion and escapes, and the escape character (`\` or as set by `# escape=`) escapes the next
 * character outside single quotes. Unquoted expansions are split into words by `words()`.
 */
export type Vars = ReadonlyMap<string, string>;

/**
 * What the variable expansions of one instruction may produce in all (and so any one word):
 * 1 MiB. Without a bound, `ENV A=$A$A` repeated doubles a value per line (28 lines reached 4 GB
 * and a crash). No value that large has a use: the kernel refuses any one argument or
 * environment string over MAX_ARG_STRLEN (128 KiB) at execve, so a RUN could never receive it,
 * and a whole argv plus environment is capped near 2 MiB (a quarter of the default 8 MiB stack).
 */
export const MAX_EXPANSION = 1 << 20;

/**
 * How deeply `${A:-${B:-…}}` may nest. Each level is a recursive call: without a bound a long line
 * of openings overflowed the stack (a RangeError). No real Dockerfile nests more than two or three.
 */
export const MAX_NESTING = 32;

/**
 * The variables one instruction sees, carrying what its expansions may still produce: every
 * expansion against it is charged, so that an instruction of many words (`EXPOSE $A $A …`, one
 * ENV of many pairs) is bounded in all, not only word by word. A plain map bounds each call alone.
 */
export class InstructionVars extends Map<string, string> {
  remaining = MAX_EXPANSION;
}

/** An expansion that would pass MAX_EXPANSION or MAX_NESTING. */
export class ExpansionLimitError extends InvalidArgumentError {}

/** `${VAR:?message}` with VAR unset (or empty): carries the offending text so errors can point at it. */
export class UnsetVariableError extends InvalidArgumentError {
  constructor(
    message: string,
    /** The substitution as written, e.g. `${X:?need X}`. */
    readonly fragment: string,
  ) {
    super(message);
  }
}

interface Piece {
  text: string;
  /** false when the text came from an unquoted expansion and may be split on whitespace. */
  quoted: boolean;
}

/** What Go's filepath.Match treats specially: escaped in a pattern to match literally. */
const GLOB_SPECIALS = '*?[]\\';

class Lexer {
  private i = 0;
  private depth = 0;
  /** What this call may produce: the instruction's remaining budget, else MAX_EXPANSION. */
  readonly limit: number;
  constructor(
    private readonly s: string,
    private readonly vars: Vars,
    private readonly escape: string,
    private readonly used: Set<string> | undefined,
    /** Keep an escaped `*?[]` (or backslash) escaped, with a backslash, for a wildcard matcher. */
    private readonly globEscapes = false,
  ) {
    this.limit = vars instanceof InstructionVars ? vars.remaining : MAX_EXPANSION;
  }

  /** Fails once a word being built passes the limit, before it can grow any further. */
  private check(length: number): void {
    if (length > this.limit) {
      throw new ExpansionLimitError(`variable expansion is too large: more than ${MAX_EXPANSION >> 20} MiB in one instruction`);
    }
  }

  /** Lexes the whole input into pieces, honouring quotes; stops at the end (or a `}` when nested). */
  pieces(stopAtBrace = false): Piece[] {
    const out: Piece[] = [];
    let lit = '';
    let done = 0;
    // A quoted empty string is still a word (`COPY "" /dest/` names the whole context).
    let quotedEmpty = false;
    const flush = () => {
      if (lit.length > 0 || quotedEmpty) out.push({ text: lit, quoted: true });
      lit = '';
      quotedEmpty = false;
    };
    while (this.i < this.s.length) {
      this.check(done + lit.length);
      const c = this.s[this.i]!;
      if (stopAtBrace && c === '}') break;
      if (c === this.escape) {
        this.i++;
        if (this.i < this.s.length) lit += this.escaped(this.s[this.i++]!);
        else lit += c;
        continue;
      }
      if (c === "'") {
        this.i++;
        quotedEmpty = true;
        const end = this.s.indexOf("'", this.i);
        if (end < 0) throw new InvalidArgumentError('unexpected end of statement while looking for matching single-quote');
        lit += this.s.slice(this.i, end);
        this.i = end + 1;
        continue;
      }
      if (c === '"') {
        this.i++;
        quotedEmpty = true;
        lit += this.doubleQuoted(done + lit.length);
        continue;
      }
      if (c === '$') {
        const v = this.dollar();
        if (v !== undefined) {
          done += lit.length + v.length;
          flush();
          out.push({ text: v, quoted: false });
          continue;
        }
        lit += '$';
        continue;
      }
      lit += c;
      this.i++;
    }
    this.check(done + lit.length);
    flush();
    return out;
  }

  /** The text of an escaped character: as is, or for a wildcard matcher escaped with a backslash. */
  private escaped(n: string): string {
    return this.globEscapes && GLOB_SPECIALS.includes(n) ? `\\${n}` : n;
  }

  /** A double-quoted string's text; `before` is what the word holds already (for the limit). */
  private doubleQuoted(before: number): string {
    let out = '';
    while (this.i < this.s.length) {
      this.check(before + out.length);
      const c = this.s[this.i]!;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c === this.escape) {
        const n = this.s[this.i + 1];
        // Inside double quotes the escape only escapes ", $, the escape itself (and newline); for
        // a wildcard matcher it also keeps `*?[]` literal.
        if (n === '"' || n === '$' || n === this.escape || (this.globEscapes && n !== undefined && GLOB_SPECIALS.includes(n))) {
          out += this.escaped(n);
          this.i += 2;
          continue;
        }
        out += c;
        this.i++;
        continue;
      }
      if (c === '$') {
        const v = this.dollar();
        out += v ?? '$';
        continue;
      }
      out += c;
      this.i++;
    }
    throw new InvalidArgumentError('unexpected end of statement while looking for matching double-quote');
  }

  /** At a `$`: returns the expansion, or undefined when the `$` is literal (it is consumed either way). */
  private dollar(): string | undefined {
    const start = this.i;
    this.i++; // '$'
    const c = this.s[this.i];
    if (c === '{') {
      this.i++;
      const name = this.name();
      if (name === '') throw new InvalidArgumentError(`bad substitution in "${clip(this.s)}"`);
      this.used?.add(name);
      const value = this.vars.get(name);
      const c2 = this.s[this.i];
      if (c2 === '}') {
        this.i++;
        return value ?? '';
      }
      let colon = false;
      if (c2 === ':') {
        colon = true;
        this.i++;
      }
      const op = this.s[this.i];
      if (op !== '-' && op !== '+' && op !== '?') throw new InvalidArgumentError(`unsupported modifier (${op ?? 'end'}) in substitution of ${name}`);
      this.i++;
      if (++this.depth > MAX_NESTING) throw new ExpansionLimitError(`variable substitutions nested more than ${MAX_NESTING} deep`);
      const word = this.pieces(true).map((p) => p.text).join('');
      this.depth--;
      if (this.s[this.i] !== '}') throw new InvalidArgumentError(`missing '}' in substitution of ${name}`);
      this.i++;
      const set = colon ? value !== undefined && value !== '' : value !== undefined;
      switch (op) {
        case '-':
          return set ? value! : word;
        case '+':
          return set ? word : '';
        default:
          if (!set) throw new UnsetVariableError(`${name}: ${clip(word) || 'is not allowed to be unset'}`, clip(this.s.slice(start, this.i)));
          return value!;
      }
    }
    const name = this.name();
    if (name === '') return undefined;
    this.used?.add(name);
    return this.vars.get(name) ?? '';
  }

  private name(): string {
    // A name, or digits: docker's lexer reads `$1` as the (never set) positional variable 1.
    // Sticky, not a match on a slice of the rest: linear on a long line of `$`s.
    NAME.lastIndex = this.i;
    const m = NAME.exec(this.s);
    if (!m) return '';
    this.i += m[0].length;
    return m[0];
  }
}

const NAME = /[A-Za-z_][A-Za-z0-9_]*|[0-9]+/y;

/** At most `n` characters of `s` for an error message (a substitution may be a megabyte long). */
function clip(s: string, n = 100): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** Charges what one expansion produced to its instruction's budget. */
function charge(vars: Vars, produced: number): void {
  if (vars instanceof InstructionVars) vars.remaining -= produced;
}

/** Expands one word: quotes removed, variables substituted, no splitting. */
export function expandWord(s: string, vars: Vars, escape = '\\', used?: Set<string>): string {
  const out = new Lexer(s, vars, escape, used).pieces().map((p) => p.text).join('');
  charge(vars, out.length);
  return out;
}

/**
 * Splits on unquoted whitespace, then expands each word; an unquoted expansion containing
 * whitespace becomes several words, as in docker's ProcessWords. With `globEscapes` the words are
 * wildcard patterns (COPY/ADD sources): an escaped `*?[]` or escape stays escaped with a backslash
 * (`n\?pe` names "n?pe"), where plain expansion would drop the escape and leave a wildcard.
 */
export function expandWords(s: string, vars: Vars, escape = '\\', used?: Set<string>, o: { globEscapes?: boolean } = {}): string[] {
  const out: string[] = [];
  let produced = 0;
  for (const raw of splitRaw(s, escape)) {
    const lexer = new Lexer(raw, vars, escape, used, o.globEscapes);
    const pieces = lexer.pieces();
    produced += pieces.reduce((n, p) => n + p.text.length, 0);
    if (produced > lexer.limit) throw new ExpansionLimitError(`variable expansion is too large: more than ${MAX_EXPANSION >> 20} MiB in one instruction`);
    let cur: string | undefined;
    for (const p of pieces) {
      if (p.quoted) {
        cur = (cur ?? '') + p.text;
        continue;
      }
      const parts = p.text.split(/[ \t\r\n]+/);
      parts.forEach((part, k) => {
        if (k > 0) {
          if (cur !== undefined && cur !== '') out.push(cur);
          cur = undefined;
        }
        if (part !== '') cur = (cur ?? '') + part;
      });
    }
    if (cur !== undefined) out.push(cur);
  }
  charge(vars, produced);
  return out;
}

/**
 * ARG's `name[=default]` words. The line is split on whitespace outside quotes first, then each
 * name and default is expanded alone as one word, as BuildKit's ArgCommand.Expand does: a
 * default that expands to text with spaces (`ARG e=$q` after `ARG q="a b"`) stays whole, where
 * splitting after expansion cut it to `a` and declared `b` as a second ARG.
 */
export function expandArgWords(s: string, vars: Vars, escape = '\\'): { name: string; value?: string }[] {
  return splitRaw(s, escape).map((raw) => {
    const eq = raw.indexOf('=');
    if (eq < 0) return { name: expandWord(raw, vars, escape) };
    return { name: expandWord(raw.slice(0, eq), vars, escape), value: expandWord(raw.slice(eq + 1), vars, escape) };
  });
}

/** Splits text into raw words on whitespace outside quotes, keeping quotes and escapes in place. */
export function splitRaw(s: string, escape = '\\'): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      cur += c;
      if (c === escape && quote === '"' && i + 1 < s.length) cur += s[++i];
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    inWord = true;
    cur += c;
    if (c === escape && i + 1 < s.length) cur += s[++i];
    else if (c === '"' || c === "'") quote = c;
  }
  if (inWord) out.push(cur);
  return out;
}
