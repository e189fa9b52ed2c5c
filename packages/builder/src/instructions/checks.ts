import { TsbuildError } from '@tsbuild/oci';
import { goDuration, parseRunMount } from '@tsbuild/container';
import { DockerfileError, KEYWORDS, type Instruction, type ParsedDockerfile } from '../dockerfile.js';
import { expandWord, splitRaw } from '../expand.js';

/** HEALTHCHECK's duration options and the config fields they set. */
export const HEALTHCHECK_FLAGS = [
  ['interval', 'Interval'],
  ['timeout', 'Timeout'],
  ['start-period', 'StartPeriod'],
  ['start-interval', 'StartInterval'],
] as const;

/** Go durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`), in nanoseconds; 0 leaves the default. */
export function parseDuration(ins: Instruction, flag: string, v: string, file: string): number {
  const total = goDuration(v);
  if (total === undefined || total < 0) throw new DockerfileError(file, ins.line, `HEALTHCHECK --${flag}=${v}: want a duration such as 30s or 1m30s`);
  if (total !== 0 && total < 1e6) throw new DockerfileError(file, ins.line, `HEALTHCHECK --${flag}=${v}: must be at least 1ms`);
  return total;
}

export function parseRetries(ins: Instruction, v: string, file: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new DockerfileError(file, ins.line, `HEALTHCHECK --retries=${v}: want a whole number of at least 1`);
  return Number(v);
}

/** ENV and LABEL arguments: `k=v k2="v 2"` pairs, or the legacy `ENV key value with spaces`. */
export function parseKeyValues(ins: Instruction, vars: Map<string, string>, esc: string, file: string): [string, string][] {
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

/** RUN --network as written: none, host or default; undefined when a variable decides it at run time. */
export function checkNetwork(ins: Instruction, value: string, file: string): void {
  if (value === 'none' || value === 'host' || value === 'default') return;
  throw DockerfileError.at(file, ins, '--network', `RUN --network=${value}: want none, host or default`);
}

function checkSecurity(ins: Instruction, value: string, file: string): void {
  if (value !== 'sandbox') throw DockerfileError.at(file, ins, '--security', `RUN --security=${value}: only sandbox is supported (insecure needs entitlements tsbuild does not grant)`);
}

export function checkChmod(ins: Instruction, value: string, file: string): void {
  if (!/^[0-7]{3,4}$/.test(value)) throw DockerfileError.at(file, ins, '--chmod', `${ins.keyword} --chmod=${value}: want an octal mode such as 755`);
}

/** A value that holds a variable is checked when the step runs, after expansion. */
function literal(v: string): boolean {
  return !v.includes('$');
}

/**
 * Everything about one instruction that can be known before the build runs: its flags' values,
 * HEALTHCHECK's options, the JSON form SHELL needs, ONBUILD's trigger, RUN's --mount specs. The
 * build checks every instruction of every stage it needs first, so that a mistake on line 40 is
 * reported before line 3 runs; the handlers check the same rules again after expansion.
 */
export function checkInstruction(ins: Instruction, file: string): void {
  const flag = (name: string) => ins.flags.get(name)?.at(-1);
  switch (ins.keyword) {
    case 'SHELL':
      if (!ins.json || ins.json.length === 0) throw new DockerfileError(file, ins.line, 'SHELL requires the arguments to be in JSON form');
      return;
    case 'HEALTHCHECK': {
      const words = ins.json ? undefined : splitRaw(ins.args, '\\');
      if (!ins.json && words![0]?.toUpperCase() === 'NONE') {
        if (words!.length > 1 || ins.flags.size > 0) throw new DockerfileError(file, ins.line, 'HEALTHCHECK NONE takes no arguments or options');
        return;
      }
      if (ins.args.replace(/^\s*CMD\b\s*/i, '') === ins.args) throw new DockerfileError(file, ins.line, 'HEALTHCHECK requires CMD or NONE');
      for (const [f] of HEALTHCHECK_FLAGS) {
        const v = flag(f);
        if (v !== undefined) parseDuration(ins, f, v, file);
      }
      const retries = flag('retries');
      if (retries !== undefined) parseRetries(ins, retries, file);
      return;
    }
    case 'ONBUILD': {
      const kw = ins.args.trim().split(/\s+/, 1)[0]!.toUpperCase();
      if (kw === 'ONBUILD' || kw === 'FROM' || kw === 'MAINTAINER') throw new DockerfileError(file, ins.line, `ONBUILD ${kw} is not allowed`);
      if (!KEYWORDS.has(kw)) throw new DockerfileError(file, ins.line, `ONBUILD: unknown instruction: ${kw}`);
      return;
    }
    case 'RUN': {
      const network = flag('network');
      if (network !== undefined && literal(network)) checkNetwork(ins, network, file);
      const security = flag('security');
      if (security !== undefined) checkSecurity(ins, security, file);
      for (const m of ins.flags.get('mount') ?? []) {
        if (!literal(m)) continue;
        try {
          parseRunMount(m, '/');
        } catch (e) {
          if (!(e instanceof TsbuildError)) throw e;
          throw DockerfileError.at(file, ins, `--mount=${m}`, `RUN ${e.message}`);
        }
      }
      if (ins.json && ins.json.length === 0) throw new DockerfileError(file, ins.line, 'RUN requires at least one argument');
      return;
    }
    case 'COPY':
    case 'ADD': {
      const chmod = flag('chmod');
      if (chmod !== undefined && literal(chmod)) checkChmod(ins, chmod, file);
      if (ins.json && ins.json.length < 2) throw new DockerfileError(file, ins.line, `${ins.keyword} requires at least two arguments: ${ins.keyword} <src>... <dest>`);
      return;
    }
    case 'ENV':
    case 'LABEL':
      if (splitRaw(ins.args, '\\').length === 0) throw new DockerfileError(file, ins.line, `${ins.keyword} requires at least one argument`);
      return;
    case 'WORKDIR':
      if (ins.args.trim() === '') throw new DockerfileError(file, ins.line, 'WORKDIR requires a path');
      return;
    default:
      if (!KEYWORDS.has(ins.keyword)) throw new DockerfileError(file, ins.line, `${ins.keyword} is not supported by this version of tsbuild yet`);
  }
}

/** Checks every instruction of the given stages (see checkInstruction); the first problem is thrown. */
export function checkDockerfile(df: ParsedDockerfile, stages = df.stages): void {
  for (const s of stages) for (const ins of s.instructions) checkInstruction(ins, df.file);
}
