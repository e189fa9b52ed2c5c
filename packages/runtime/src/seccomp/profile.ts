import { InvalidArgumentError } from '@tsbuild/oci';

/**
 * A seccomp profile in docker's JSON format (moby profiles/seccomp, the `--security-opt
 * seccomp=PROFILE.json` file): a default action, the architectures it covers and rules that name
 * syscalls, optionally with argument comparisons and with includes/excludes conditions on the
 * container's capabilities, the architecture and the kernel version. `resolveProfile` evaluates
 * the conditions for one container; `compileFilter` (bpf.ts) turns the result into BPF.
 */
export interface SeccompProfile {
  defaultAction: SeccompAction;
  /** errno for an SCMP_ACT_ERRNO default action; EPERM when absent. */
  defaultErrnoRet?: number;
  /** SCMP_ARCH_* names; when absent, the archMap entry of the native architecture decides. */
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures: string[] | null }[];
  syscalls: SeccompRule[];
}

export type SeccompAction =
  | 'SCMP_ACT_ALLOW'
  | 'SCMP_ACT_ERRNO'
  | 'SCMP_ACT_KILL'
  | 'SCMP_ACT_KILL_THREAD'
  | 'SCMP_ACT_KILL_PROCESS'
  | 'SCMP_ACT_TRAP'
  | 'SCMP_ACT_TRACE'
  | 'SCMP_ACT_LOG';

export type SeccompOperator = 'SCMP_CMP_NE' | 'SCMP_CMP_LT' | 'SCMP_CMP_LE' | 'SCMP_CMP_EQ' | 'SCMP_CMP_GE' | 'SCMP_CMP_GT' | 'SCMP_CMP_MASKED_EQ';

/** Argument `index` (0-5) compared with `value`; for MASKED_EQ `value` is the mask and `valueTwo` the datum. */
export interface SeccompArg {
  index: number;
  value: number | bigint;
  valueTwo?: number | bigint;
  op: SeccompOperator;
}

export interface SeccompCondition {
  /** Capability names (CAP_…): includes needs all of them, excludes skips the rule on any. */
  caps?: string[];
  /** Go architecture names (amd64, arm64, 386, x32…) as docker compares them with its own. */
  arches?: string[];
  /** "major.minor": includes needs at least this kernel, excludes skips from it on. */
  minKernel?: string;
}

export interface SeccompRule {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  /** All must hold (AND). Rules naming the same syscall are alternatives (OR). */
  args?: SeccompArg[];
  includes?: SeccompCondition;
  excludes?: SeccompCondition;
  comment?: string;
}

/** A rule after its conditions were evaluated for one container. */
export interface ResolvedRule {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args: SeccompArg[];
}

export interface ResolvedProfile {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  /** SCMP_ARCH_* names, the native one first. */
  architectures: string[];
  rules: ResolvedRule[];
}

const ACTIONS = new Set<string>(['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_TRAP', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG']);
const OPERATORS = new Set<string>(['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ']);

/** Node's process.arch → the SCMP_ARCH name and docker's (Go's) architecture name. */
export const NATIVE_ARCH: Record<string, { scmp: string; go: string }> = {
  x64: { scmp: 'SCMP_ARCH_X86_64', go: 'amd64' },
  ia32: { scmp: 'SCMP_ARCH_X86', go: '386' },
  arm64: { scmp: 'SCMP_ARCH_AARCH64', go: 'arm64' },
  arm: { scmp: 'SCMP_ARCH_ARM', go: 'arm' },
  s390x: { scmp: 'SCMP_ARCH_S390X', go: 's390x' },
  ppc64: { scmp: 'SCMP_ARCH_PPC64LE', go: 'ppc64le' },
  riscv64: { scmp: 'SCMP_ARCH_RISCV64', go: 'riscv64' },
};

/**
 * Parses and validates a docker seccomp profile (JSON text). `source` names the file in errors.
 * Accepts the old single `name` form of a rule too. Unknown syscall names are not an error here:
 * docker skips names the architecture lacks, and so does the compiler.
 */
export function parseSeccompProfile(text: string, source = 'seccomp profile'): SeccompProfile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`${source}: not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidArgumentError(`${source}: not a JSON object`);
  const o = raw as Record<string, unknown>;
  const defaultAction = action(o.defaultAction, `${source}: defaultAction`);
  const profile: SeccompProfile = { defaultAction, syscalls: [] };
  if (o.defaultErrnoRet !== undefined && o.defaultErrnoRet !== null) profile.defaultErrnoRet = errno(o.defaultErrnoRet, `${source}: defaultErrnoRet`);
  if (o.architectures !== undefined && o.architectures !== null) profile.architectures = strings(o.architectures, `${source}: architectures`);
  if (Array.isArray(o.archMap)) {
    profile.archMap = o.archMap.map((m: unknown, i) => {
      const e = m as Record<string, unknown>;
      const where = `${source}: archMap[${i}]`;
      if (typeof e?.architecture !== 'string') throw new InvalidArgumentError(`${where}: architecture must be a string`);
      return { architecture: e.architecture, subArchitectures: e.subArchitectures === null || e.subArchitectures === undefined ? null : strings(e.subArchitectures, `${where}.subArchitectures`) };
    });
  }
  if (o.syscalls !== undefined && o.syscalls !== null && !Array.isArray(o.syscalls)) throw new InvalidArgumentError(`${source}: syscalls must be an array`);
  for (const [i, s] of ((o.syscalls as unknown[] | undefined) ?? []).entries()) {
    const where = `${source}: syscalls[${i}]`;
    if (typeof s !== 'object' || s === null) throw new InvalidArgumentError(`${where}: not an object`);
    const r = s as Record<string, unknown>;
    const names = r.names !== undefined && r.names !== null ? strings(r.names, `${where}.names`) : typeof r.name === 'string' ? [r.name] : undefined;
    if (names === undefined || names.length === 0) throw new InvalidArgumentError(`${where}: names is missing`);
    const rule: SeccompRule = { names, action: action(r.action, `${where}.action`) };
    if (r.errnoRet !== undefined && r.errnoRet !== null) rule.errnoRet = errno(r.errnoRet, `${where}.errnoRet`);
    if (r.args !== undefined && r.args !== null) {
      if (!Array.isArray(r.args)) throw new InvalidArgumentError(`${where}.args must be an array`);
      rule.args = r.args.map((a: unknown, j) => arg(a, `${where}.args[${j}]`));
    }
    if (r.includes !== undefined && r.includes !== null) rule.includes = condition(r.includes, `${where}.includes`);
    if (r.excludes !== undefined && r.excludes !== null) rule.excludes = condition(r.excludes, `${where}.excludes`);
    if (typeof r.comment === 'string') rule.comment = r.comment;
    profile.syscalls.push(rule);
  }
  return profile;
}

export interface ResolveContext {
  /** The container's capabilities (bounding set), as CAP_… names. */
  capabilities: ReadonlySet<string>;
  /** Node's process.arch of the machine the filter is for. */
  arch: string;
  /** The kernel release (uname -r). */
  kernel: string;
}

/** Evaluates includes/excludes for one container, as docker does before handing the profile to runc. */
export function resolveProfile(p: SeccompProfile, ctx: ResolveContext): ResolvedProfile {
  const native = NATIVE_ARCH[ctx.arch];
  if (native === undefined) throw new InvalidArgumentError(`seccomp: unsupported architecture ${ctx.arch}`);
  let architectures = p.architectures;
  if (architectures === undefined || architectures.length === 0) {
    const m = p.archMap?.find((e) => e.architecture === native.scmp);
    architectures = [native.scmp, ...(m?.subArchitectures ?? [])];
  }
  architectures = [native.scmp, ...architectures.filter((a) => a !== native.scmp)];
  const rules: ResolvedRule[] = [];
  for (const r of p.syscalls) {
    const inc = r.includes;
    if (inc !== undefined) {
      if (inc.arches !== undefined && inc.arches.length > 0 && !inc.arches.includes(native.go)) continue;
      if (inc.caps !== undefined && !inc.caps.every((c) => ctx.capabilities.has(c))) continue;
      if (inc.minKernel !== undefined && compareKernel(ctx.kernel, inc.minKernel) < 0) continue;
    }
    const exc = r.excludes;
    if (exc !== undefined) {
      if (exc.arches !== undefined && exc.arches.includes(native.go)) continue;
      if (exc.caps !== undefined && exc.caps.some((c) => ctx.capabilities.has(c))) continue;
      if (exc.minKernel !== undefined && compareKernel(ctx.kernel, exc.minKernel) >= 0) continue;
    }
    const rule: ResolvedRule = { names: r.names, action: r.action, args: r.args ?? [] };
    if (r.errnoRet !== undefined) rule.errnoRet = r.errnoRet;
    rules.push(rule);
  }
  const out: ResolvedProfile = { defaultAction: p.defaultAction, architectures, rules };
  if (p.defaultErrnoRet !== undefined) out.defaultErrnoRet = p.defaultErrnoRet;
  return out;
}

/** Compares "6.18.0-foo" with "4.8": negative when a is older. */
export function compareKernel(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => Number.parseInt(x, 10));
  const pb = b.split(/[.-]/).map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < 2; i++) {
    const d = (Number.isNaN(pa[i]) ? 0 : (pa[i] ?? 0)) - (Number.isNaN(pb[i]) ? 0 : (pb[i] ?? 0));
    if (d !== 0) return d;
  }
  return 0;
}

function action(v: unknown, where: string): SeccompAction {
  if (typeof v !== 'string' || !ACTIONS.has(v)) throw new InvalidArgumentError(`${where}: unsupported action ${JSON.stringify(v)} (one of ${[...ACTIONS].join(', ')})`);
  return v as SeccompAction;
}

function errno(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidArgumentError(`${where}: must be an errno number, got ${JSON.stringify(v)}`);
  return v;
}

function strings(v: unknown, where: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidArgumentError(`${where}: must be an array of strings`);
  return v as string[];
}

function u64(v: unknown, where: string): number | bigint {
  if (typeof v === 'bigint' && v >= 0n && v < 1n << 64n) return v;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER) return v;
  throw new InvalidArgumentError(`${where}: must be an unsigned 64-bit integer, got ${String(v)}`);
}

function arg(a: unknown, where: string): SeccompArg {
  if (typeof a !== 'object' || a === null) throw new InvalidArgumentError(`${where}: not an object`);
  const o = a as Record<string, unknown>;
  if (typeof o.index !== 'number' || !Number.isInteger(o.index) || o.index < 0 || o.index > 5) throw new InvalidArgumentError(`${where}.index: must be 0 to 5`);
  if (typeof o.op !== 'string' || !OPERATORS.has(o.op)) throw new InvalidArgumentError(`${where}.op: unsupported operator ${JSON.stringify(o.op)}`);
  const out: SeccompArg = { index: o.index, value: u64(o.value ?? 0, `${where}.value`), op: o.op as SeccompOperator };
  if (o.valueTwo !== undefined && o.valueTwo !== null) out.valueTwo = u64(o.valueTwo, `${where}.valueTwo`);
  return out;
}

function condition(c: unknown, where: string): SeccompCondition {
  if (typeof c !== 'object' || c === null) throw new InvalidArgumentError(`${where}: not an object`);
  const o = c as Record<string, unknown>;
  const out: SeccompCondition = {};
  if (o.caps !== undefined && o.caps !== null) out.caps = strings(o.caps, `${where}.caps`);
  if (o.arches !== undefined && o.arches !== null) out.arches = strings(o.arches, `${where}.arches`);
  if (typeof o.minKernel === 'string' && o.minKernel !== '') out.minKernel = o.minKernel;
  return out;
}
