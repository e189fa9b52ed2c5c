import { type Platform, formatPlatform, normalisePlatform, parseReference } from '@tsbuild/oci';
import type { Instruction, ParsedDockerfile, Stage } from '../dockerfile.js';
import { InstructionVars, expandWord, splitRaw } from '../expand.js';

/**
 * Build checks: BuildKit's lint rules (frontend/dockerfile/linter, docs.docker.com/reference/build-checks),
 * by the same names and meanings, over a parsed Dockerfile. A finding is advice, never an error:
 * checkInstruction (instructions/checks.ts) owns what makes a Dockerfile invalid, these rules own
 * what is valid but probably not meant. The messages follow BuildKit's wording so that a search
 * for one finds BuildKit's documentation of the rule.
 */
export interface CheckFinding {
  rule: string;
  /** 1-based line in the Dockerfile. */
  line: number;
  message: string;
}

/** ARGs BuildKit defines for every build, usable in FROM without a declaration. */
const PREDEFINED_ARGS = new Set([
  'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT',
  'TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT',
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
]);

/** Stage names BuildKit reserves: `scratch` is the empty image, `context` the build context. */
const RESERVED_STAGE_NAMES = new Set(['scratch', 'context']);

/** BuildKit's SecretsUsedInArgOrEnv patterns: a secret word as a whole `_`-separated part of the name, unless it says public. */
const SECRET_NAME = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const PUBLIC_NAME = /(?:_|^)(?:public)(?:_|$)/i;

/** The instructions whose arguments the builder expands (RUN, CMD and ENTRYPOINT leave it to the shell). */
const EXPANDED = new Set(['ADD', 'ARG', 'COPY', 'ENV', 'EXPOSE', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR']);

/** The keyword as written (`from`, `From`): the parser upper-cases it. */
function rawKeyword(ins: Instruction): string {
  return (ins.source[0] ?? '').slice(ins.column - 1).split(/[\s]/, 1)[0] ?? ins.keyword;
}

/** The `AS name` words of a FROM as written. */
function fromWords(df: ParsedDockerfile, stage: Stage): { image: string; as?: string; name?: string } {
  const words = splitRaw(stage.from.args, df.escape);
  return { image: words[0] ?? '', ...(words.length === 3 ? { as: words[1]!, name: words[2]! } : {}) };
}

/**
 * The variables a text refers to for expansion, as `[name, hasDefault]`: `$X` and `${X}` need X,
 * `${X:-word}` and the other modifier forms say what happens when X is unset (BuildKit leaves
 * those alone too). Single-quoted text and escaped `$` are literal.
 */
export function referencedVars(s: string, escape = '\\'): { name: string; guarded: boolean }[] {
  const out: { name: string; guarded: boolean }[] = [];
  let single = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (single) {
      if (c === "'") single = false;
      continue;
    }
    if (c === "'") {
      single = true;
      continue;
    }
    if (c === escape) {
      i++;
      continue;
    }
    if (c !== '$') continue;
    const m = /^\{([A-Za-z_][A-Za-z0-9_]*)(\}|:?[-+?])|^([A-Za-z_][A-Za-z0-9_]*)/.exec(s.slice(i + 1, i + 1 + 300));
    if (!m) continue;
    if (m[3] !== undefined) {
      out.push({ name: m[3], guarded: false });
      i += m[3].length;
    } else {
      out.push({ name: m[1]!, guarded: m[2] !== '}' });
      i += 1 + m[1]!.length; // scan on inside `${X:-word}`: word may use variables too
    }
  }
  return out;
}

/** The closest of `options` to `name` (Levenshtein), when close enough to be a likely typo. */
export function suggest(name: string, options: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestCost = Math.floor(name.length / 2) + 1;
  for (const o of options) {
    if (o === name) continue;
    const cost = o.toLowerCase() === name.toLowerCase() ? 0.5 : levenshtein(name, o);
    if (cost < bestCost) {
      bestCost = cost;
      best = o;
    }
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function unquote(w: string): string {
  return w.length >= 2 && (w[0] === '"' || w[0] === "'") && w.at(-1) === w[0] ? w.slice(1, -1) : w;
}

/** ARG's names as written (`ARG A=1 B`). */
function argNames(ins: Instruction, escape: string): string[] {
  return splitRaw(ins.args, escape).map((w) => w.split('=', 1)[0]!);
}

/** ENV's keys as written, either form. */
function envKeys(ins: Instruction, escape: string): string[] {
  const words = splitRaw(ins.args, escape);
  if (words.length > 0 && !words[0]!.includes('=')) return [words[0]!];
  return words.map((w) => w.split('=', 1)[0]!);
}

/**
 * The rules that need nothing but the Dockerfile, over every stage (BuildKit checks the whole
 * file, not only the stages a target needs). Findings come in line order.
 */
export function lintDockerfile(df: ParsedDockerfile): CheckFinding[] {
  const out: CheckFinding[] = [];
  const add = (rule: string, line: number, message: string) => out.push({ rule, line, message });
  const esc = df.escape;
  const globalNames = new Set(df.globalArgs.flatMap((a) => argNames(a, esc)));

  // ConsistentInstructionCasing: the casing most instructions use wins; a tie goes to upper case.
  const all = df.stages.flatMap((s) => [s.from, ...s.instructions]);
  let lower = 0;
  let upper = 0;
  for (const ins of all) {
    const k = rawKeyword(ins);
    if (k === k.toLowerCase()) lower++;
    else if (k === k.toUpperCase()) upper++;
  }
  const majorityLower = lower > upper;
  for (const ins of all) {
    const k = rawKeyword(ins);
    if (majorityLower ? k !== k.toLowerCase() : k !== k.toUpperCase()) {
      add('ConsistentInstructionCasing', ins.line, `Command '${k}' should match the case of the command majority (${majorityLower ? 'lowercase' : 'uppercase'})`);
    }
  }

  for (const ins of df.globalArgs) {
    secrets(ins);
    description(ins, 'build argument', argNames(ins, esc));
  }

  const defaults = globalDefaults(df);
  const seen = new Set<string>();
  const absoluteWorkdir = new Map<number, boolean>();
  for (const stage of df.stages) {
    const from = stage.from;
    const { image, as, name } = fromWords(df, stage);
    if (as !== undefined && name !== undefined) {
      const fk = rawKeyword(from);
      if ((fk === fk.toUpperCase() && as !== as.toUpperCase()) || (fk === fk.toLowerCase() && as !== as.toLowerCase())) {
        add('FromAsCasing', from.line, `'${as}' and '${fk}' keywords' casing do not match`);
      }
      if (name !== name.toLowerCase()) add('StageNameCasing', from.line, `Stage name '${name}' should be lowercase`);
      const lname = name.toLowerCase();
      if (seen.has(lname)) add('DuplicateStageName', from.line, `Duplicate stage name "${lname}", stage names should be unique`);
      seen.add(lname);
      if (RESERVED_STAGE_NAMES.has(lname)) add('ReservedStageName', from.line, `Stage name should not use the same name as reserved stage "${lname}"`);
      description(from, 'build stage', [name]);
    }
    // UndefinedArgInFrom: FROM sees only the global ARGs and the predefined ones.
    const platform = from.flags.get('platform')?.at(-1);
    for (const text of [image, ...(platform !== undefined ? [platform] : [])]) {
      for (const { name: v } of referencedVars(text, esc)) {
        if (globalNames.has(v) || PREDEFINED_ARGS.has(v)) continue;
        const s = suggest(v, [...globalNames, ...PREDEFINED_ARGS]);
        add('UndefinedArgInFrom', from.line, `FROM argument '${v}' is not declared${s !== undefined ? ` (did you mean ${s}?)` : ''}`);
      }
    }
    // InvalidDefaultArgInFrom: with no --build-arg given, the defaults must make a base image name.
    if (image.includes('$')) {
      let expanded: string | undefined;
      try {
        expanded = expandWord(image, new InstructionVars(defaults), esc);
      } catch {
        // `${X:?}`, a bad modifier: the build fails on it with its own error.
        expanded = undefined;
      }
      if (expanded !== undefined && (expanded === '' || !validImageName(df, stage, expanded))) {
        add('InvalidDefaultArgInFrom', from.line, `Default value for ARG ${image} results in empty or invalid base image name`);
      }
    }
    if (platform !== undefined) {
      if (/^\$(\{TARGETPLATFORM\}|TARGETPLATFORM)$/.test(platform)) {
        add('RedundantTargetPlatform', from.line, `Setting platform to predefined ${platform} in FROM is redundant as this is the default behavior`);
      } else if (!platform.includes('$') && !stageNamesPlatform(name, platform)) {
        add('FromPlatformFlagConstDisallowed', from.line, `FROM --platform flag should not use constant value "${platform}"`);
      }
    }

    const base = df.stages.find((s) => s.index < stage.index && s.name !== undefined && s.name === image.toLowerCase());
    let workdirSet = base ? (absoluteWorkdir.get(base.index) ?? false) : false;
    let shellSet = false;
    const last = new Map<string, Instruction>();
    for (const ins of stage.instructions) {
      switch (ins.keyword) {
        case 'CMD':
        case 'ENTRYPOINT':
          if (!ins.json && !shellSet && ins.args.trim() !== '') {
            add('JSONArgsRecommended', ins.line, `JSON arguments recommended for ${ins.keyword} to prevent unintended behavior related to OS signals`);
          }
          break;
        case 'SHELL':
          shellSet = true;
          break;
        case 'ARG':
          secrets(ins);
          description(ins, 'build argument', argNames(ins, esc));
          break;
        case 'ENV':
        case 'LABEL': {
          if (ins.keyword === 'ENV') secrets(ins);
          const first = splitRaw(ins.args, esc)[0];
          if (first !== undefined && !first.includes('=')) {
            add('LegacyKeyValueFormat', ins.line, `"${ins.keyword} key=value" should be used instead of legacy "${ins.keyword} key value" format`);
          }
          break;
        }
        case 'WORKDIR': {
          const dir = unquote(splitRaw(ins.args, esc)[0] ?? '');
          // A variable may well hold an absolute path: only a literal says it is relative.
          if (dir.startsWith('/') || dir.startsWith('$')) workdirSet = true;
          else if (!workdirSet && dir !== '') add('WorkdirRelativePath', ins.line, `Relative workdir "${dir}" can have unexpected results if the base image changes`);
          break;
        }
        case 'MAINTAINER':
          add('MaintainerDeprecated', ins.line, 'Maintainer instruction is deprecated in favor of using label');
          break;
        case 'EXPOSE':
          for (const w of splitRaw(ins.args, esc).map(unquote)) {
            if (w.includes('$')) continue;
            if (w.includes(':')) add('ExposeInvalidFormat', ins.line, `EXPOSE instruction should not define an IP address or host-port mapping, found '${w}'`);
            const slash = w.lastIndexOf('/');
            if (slash >= 0 && w.slice(slash + 1) !== w.slice(slash + 1).toLowerCase()) {
              add('ExposeProtoCasing', ins.line, `Defined protocol '${w}' in EXPOSE instruction should be lowercase`);
            }
          }
          break;
        default:
      }
      if (ins.keyword === 'CMD' || ins.keyword === 'ENTRYPOINT' || ins.keyword === 'HEALTHCHECK') {
        // Only the last of each takes effect: the earlier ones are the findings.
        const prev = last.get(ins.keyword);
        if (prev) add('MultipleInstructionsDisallowed', prev.line, `Multiple ${ins.keyword} instructions should not be used in the same stage because only the last one will be used`);
        last.set(ins.keyword, ins);
      }
    }
    absoluteWorkdir.set(stage.index, workdirSet);
  }
  return out.sort((a, b) => a.line - b.line);

  function secrets(ins: Instruction): void {
    const names = ins.keyword === 'ENV' ? envKeys(ins, esc) : argNames(ins, esc);
    for (const n of names) {
      if (SECRET_NAME.test(n) && !PUBLIC_NAME.test(n)) add('SecretsUsedInArgOrEnv', ins.line, `Do not use ARG or ENV instructions for sensitive data (${ins.keyword} "${n}")`);
    }
  }

  /**
   * InvalidDefinitionDescription: a comment on the line right above a named FROM or an ARG is
   * taken as its description (`docker buildx build --call=outline`), which must start with the
   * name. A blank line in between says the comment describes something else.
   */
  function description(ins: Instruction, what: string, names: string[]): void {
    const above = df.lines?.[ins.line - 2]?.trim();
    if (above === undefined || !above.startsWith('#')) return;
    // Parser directives at the top of the file are not comments.
    if (/^#\s*(syntax|escape|check)\s*=/i.test(above) && df.lines!.slice(0, ins.line - 2).every((l) => l.trim().startsWith('#') || l.trim() === '')) return;
    const first = above.replace(/^#+\s*/, '').split(/\s+/, 1)[0] ?? '';
    if (first === '' || names.includes(first)) return;
    add('InvalidDefinitionDescription', ins.line, `Comment for ${what} should follow the format: \`# ${names[0]} <description>\``);
  }
}

/** Global ARGs with their default values only (what a build without --build-arg sees), platform ARGs unset. */
function globalDefaults(df: ParsedDockerfile): Map<string, string> {
  const m = new Map<string, string>();
  for (const ins of df.globalArgs) {
    for (const w of splitRaw(ins.args, df.escape)) {
      const eq = w.indexOf('=');
      if (eq < 0) continue;
      try {
        m.set(w.slice(0, eq), expandWord(w.slice(eq + 1), new InstructionVars(m), df.escape));
      } catch {
        // an invalid default is checkInstruction's or the build's to report
      }
    }
  }
  return m;
}

/** Whether FROM's expanded name can be a base: scratch, an earlier stage or an image reference. */
function validImageName(df: ParsedDockerfile, stage: Stage, name: string): boolean {
  if (name === 'scratch' || df.stages.some((s) => s.index < stage.index && s.name === name.toLowerCase())) return true;
  try {
    parseReference(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * A constant --platform is fine for a stage named after its architecture (`AS build-arm64`):
 * BuildKit's documented exception, for Dockerfiles that build each platform in its own stage.
 */
function stageNamesPlatform(name: string | undefined, platform: string): boolean {
  const arch = platform.split('/')[1];
  return name !== undefined && arch !== undefined && arch !== '' && name.toLowerCase().includes(arch.toLowerCase());
}

/**
 * UndefinedVar over one stage: every variable an expanded instruction uses must be an ARG
 * declared in the stage, an ENV set in it, or in the base image's environment (`baseEnv`).
 * RUN, CMD and ENTRYPOINT are left alone: their shell expands, and its own variables are not ours
 * to know. BuildKit checks when it converts the stage, knowing the base image; so does the build.
 */
export function undefinedVars(df: ParsedDockerfile, stage: Stage, baseEnv: Iterable<string>): CheckFinding[] {
  const out: CheckFinding[] = [];
  const known = new Set(baseEnv);
  const reported = new Set<string>();
  const check = (ins: Instruction, text: string) => {
    for (const { name, guarded } of referencedVars(text, df.escape)) {
      if (guarded || known.has(name) || reported.has(`${ins.line}:${name}`)) continue;
      reported.add(`${ins.line}:${name}`);
      const s = suggest(name, known);
      out.push({ rule: 'UndefinedVar', line: ins.line, message: `Usage of undefined variable '$${name}'${s !== undefined ? ` (did you mean $${s}?)` : ''}` });
    }
  };
  for (const ins of stage.instructions) {
    if (!EXPANDED.has(ins.keyword)) continue;
    if (ins.keyword === 'ARG') {
      // Each default sees the names declared before it, on this line too.
      for (const w of splitRaw(ins.args, df.escape)) {
        const eq = w.indexOf('=');
        if (eq >= 0) check(ins, w.slice(eq + 1));
        known.add(eq >= 0 ? w.slice(0, eq) : w);
      }
      continue;
    }
    for (const values of ins.flags.values()) for (const v of values) check(ins, v);
    check(ins, ins.keyword === 'COPY' || ins.keyword === 'ADD' ? ins.args.replace(/<<-?(["']?)[A-Za-z_][A-Za-z0-9_]*\1/g, '') : ins.args);
    if (ins.keyword === 'ENV') for (const k of envKeys(ins, df.escape)) known.add(k);
  }
  return out;
}

/**
 * CopyIgnoredFile: a COPY or ADD from the build context naming a file the ignore rules
 * (.dockerignore) exclude, which the build will then not find. Sources with variables or
 * wildcards, URLs and here-documents are left alone.
 */
export function copyIgnored(df: ParsedDockerfile, stages: readonly Stage[], ignored: (rel: string) => boolean): CheckFinding[] {
  const out: CheckFinding[] = [];
  for (const stage of stages) {
    for (const ins of stage.instructions) {
      if ((ins.keyword !== 'COPY' && ins.keyword !== 'ADD') || ins.flags.has('from')) continue;
      const words = ins.json ?? splitRaw(ins.args, df.escape).map(unquote);
      for (const src of words.slice(0, -1)) {
        if (src.startsWith('<<') || /[$*?[]/.test(src) || /^[a-z][a-z0-9+.-]*:\/\//i.test(src) || src.startsWith('git@')) continue;
        const rel = src.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
        if (rel === '' || rel === '.' || !ignored(rel)) continue;
        const cmd = ins.keyword === 'COPY' ? 'Copy' : 'Add';
        out.push({ rule: 'CopyIgnoredFile', line: ins.line, message: `Attempting to ${cmd} file "${src}" that is excluded by .dockerignore` });
      }
    }
  }
  return out;
}

/**
 * InvalidBaseImagePlatform: the base image found for a stage is for another platform than the
 * stage is built for (a local image of another architecture, used as it is).
 */
export function basePlatform(ins: Instruction, image: string, expected: Platform, actual: Partial<Platform>): CheckFinding | undefined {
  if (!actual.os || !actual.architecture) return undefined;
  const a = normalisePlatform(actual as Platform);
  const e = normalisePlatform(expected);
  // An image without a variant fits any variant of its architecture (arm64 images rarely say v8).
  if (a.os === e.os && a.architecture === e.architecture && (a.variant === undefined || a.variant === e.variant)) return undefined;
  return { rule: 'InvalidBaseImagePlatform', line: ins.line, message: `Base image ${image} was pulled with platform "${formatPlatform(a)}", expected "${formatPlatform(e)}" for current build` };
}
