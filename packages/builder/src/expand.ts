import { InvalidArgumentError } from '@tsbuild/oci';

/**
 * Variable substitution and word splitting as the Dockerfile reference describes them (the same
 * rules as docker's shell lexer): `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
 * `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`; single quotes are literal, double quotes allow
 * expansion and escapes, and the escape character (`\` or as set by `# escape=`) escapes the next
 * character outside single quotes. Unquoted expansions are split into words by `words()`.
 */
export type Vars = ReadonlyMap<string, string>;

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

class Lexer {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly vars: Vars,
    private readonly escape: string,
    private readonly used: Set<string> | undefined,
  ) {}

  /** Lexes the whole input into pieces, honouring quotes; stops at the end (or a `}` when nested). */
  pieces(stopAtBrace = false): Piece[] {
    const out: Piece[] = [];
    let lit = '';
    const flush = () => {
      if (lit.length > 0) out.push({ text: lit, quoted: true });
      lit = '';
    };
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (stopAtBrace && c === '}') break;
      if (c === this.escape) {
        this.i++;
        if (this.i < this.s.length) lit += this.s[this.i++];
        else lit += c;
        continue;
      }
      if (c === "'") {
        this.i++;
        const end = this.s.indexOf("'", this.i);
        if (end < 0) throw new InvalidArgumentError('unexpected end of statement while looking for matching single-quote');
        lit += this.s.slice(this.i, end);
        this.i = end + 1;
        continue;
      }
      if (c === '"') {
        this.i++;
        lit += this.doubleQuoted();
        continue;
      }
      if (c === '$') {
        const v = this.dollar();
        if (v !== undefined) {
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
    flush();
    return out;
  }

  private doubleQuoted(): string {
    let out = '';
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c === this.escape) {
        const n = this.s[this.i + 1];
        // Inside double quotes the escape only escapes ", $, the escape itself (and newline).
        if (n === '"' || n === '$' || n === this.escape) {
          out += n;
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
      if (name === '') throw new InvalidArgumentError(`bad substitution in "${this.s}"`);
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
      const word = this.pieces(true).map((p) => p.text).join('');
      if (this.s[this.i] !== '}') throw new InvalidArgumentError(`missing '}' in substitution of ${name}`);
      this.i++;
      const set = colon ? value !== undefined && value !== '' : value !== undefined;
      switch (op) {
        case '-':
          return set ? value! : word;
        case '+':
          return set ? word : '';
        default:
          if (!set) throw new UnsetVariableError(`${name}: ${word || 'is not allowed to be unset'}`, this.s.slice(start, this.i));
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
    const m = /^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)/.exec(this.s.slice(this.i));
    if (!m) return '';
    this.i += m[0].length;
    return m[0];
  }
}

/** Expands one word: quotes removed, variables substituted, no splitting. */
export function expandWord(s: string, vars: Vars, escape = '\\', used?: Set<string>): string {
  return new Lexer(s, vars, escape, used).pieces().map((p) => p.text).join('');
}

/**
 * Splits on unquoted whitespace, then expands each word; an unquoted expansion containing
 * whitespace becomes several words, as in docker's ProcessWords.
 */
export function expandWords(s: string, vars: Vars, escape = '\\', used?: Set<string>): string[] {
  const out: string[] = [];
  for (const raw of splitRaw(s, escape)) {
    const pieces = new Lexer(raw, vars, escape, used).pieces();
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
  return out;
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
