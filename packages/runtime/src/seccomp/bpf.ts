import { InvalidArgumentError, lazy, sha256Of } from '@tsbuild/oci';
import type { ResolvedProfile, ResolvedRule, SeccompAction, SeccompArg } from './profile.js';
import { aarch64Syscalls } from './generated/aarch64.js';
import { i386Syscalls } from './generated/i386.js';
import { x32Syscalls } from './generated/x32.js';
import { x86_64Syscalls } from './generated/x86_64.js';

/**
 * A compiler from a resolved seccomp profile to a classic BPF program for
 * seccomp(SECCOMP_SET_MODE_FILTER). The program runs on struct seccomp_data (linux/seccomp.h):
 *   u32 nr @0, u32 arch @4, u64 instruction_pointer @8, u64 args[6] @16
 * It first checks the audit architecture (a process can switch ABI, e.g. int 0x80 on x86_64
 * enters the i386 table, so each ABI gets its own section), then finds the syscall number with
 * a binary search of jumps, then tries the syscall's rules in turn, each one an AND of argument
 * comparisons; the first that holds decides, and a syscall no rule allows gets the default action.
 */
export interface Instruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

// Classic BPF opcodes (linux/bpf_common.h).
export const BPF = {
  LD_W_ABS: 0x00 | 0x00 | 0x20, // BPF_LD | BPF_W | BPF_ABS
  ALU_AND_K: 0x04 | 0x50 | 0x00, // BPF_ALU | BPF_AND | BPF_K
  JMP_JA: 0x05 | 0x00, // BPF_JMP | BPF_JA
  JMP_JEQ_K: 0x05 | 0x10,
  JMP_JGT_K: 0x05 | 0x20,
  JMP_JGE_K: 0x05 | 0x30,
  RET_K: 0x06,
} as const;

/** seccomp return values (linux/seccomp.h); the low 16 bits carry the errno / trace data. */
export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

/** AUDIT_ARCH_* (linux/audit.h) of each ABI we compile for. */
export const AUDIT_ARCH = { X86_64: 0xc000003e, I386: 0x40000003, AARCH64: 0xc00000b7 } as const;
const X32_SYSCALL_BIT = 0x40000000;

const EPERM = 1;
const ENOSYS = 38;

export const SECCOMP_DATA = { nr: 0, arch: 4, args: 16 } as const;

export interface CompileOptions {
  /**
   * Syscalls numbered above every syscall the profile names fail with ENOSYS rather than the
   * default action, as runc does: a syscall newer than the profile then looks unimplemented and
   * libcs fall back to an older one instead of failing with EPERM. Default: on unless the
   * default action allows.
   */
  enosysForNewer?: boolean;
}

/**
 * Compiles for the machine the profile was resolved for (its first architecture): the x86 family
 * (x86_64 with its i386 and x32 ABIs) or AArch64. On AArch64 the 32-bit ARM ABI is not compiled
 * (this repository has no table for it): an AArch32 process is killed at its first syscall, where
 * docker's filter would check it against the ARM table.
 */
export function compileFilter(p: ResolvedProfile, opts: CompileOptions = {}): Instruction[] {
  // Only for an allowlist: a profile that allows by default must not turn new syscalls into errors.
  const enosys = opts.enosysForNewer ?? (p.defaultAction !== 'SCMP_ACT_ALLOW' && p.defaultAction !== 'SCMP_ACT_LOG');
  const e = new Emitter();
  // Emitted back to front: every jump target exists when the jump is written (see Emitter).
  const badArch = e.ret(SECCOMP_RET.KILL_PROCESS);
  const defaultRet = e.ret(actionValue(p.defaultAction, p.defaultErrnoRet ?? EPERM));
  const newerRet = enosys ? e.ret(SECCOMP_RET.ERRNO | ENOSYS) : defaultRet;
  if (p.architectures[0] === 'SCMP_ARCH_AARCH64') {
    const body = dispatch(e, rulesByNumber(p.rules, syscallTables().AARCH64), defaultRet, newerRet);
    e.goto(body);
    const aarch64 = e.load(SECCOMP_DATA.nr);
    e.jump(BPF.JMP_JEQ_K, AUDIT_ARCH.AARCH64, aarch64, badArch);
  } else {
    x86Family(e, p, badArch, defaultRet, newerRet);
  }
  e.load(SECCOMP_DATA.arch);
  return e.program();
}

/** The x86 family's dispatch on the audit architecture (and x32's bit) to each ABI's search. */
function x86Family(e: Emitter, p: ResolvedProfile, badArch: number, defaultRet: number, newerRet: number): void {
  const sections: { arch: 'X86_64' | 'I386' | 'X32'; table: Readonly<Record<string, number>> }[] = [];
  for (const a of p.architectures) {
    if (a === 'SCMP_ARCH_X86_64') sections.push({ arch: 'X86_64', table: syscallTables().X86_64 });
    else if (a === 'SCMP_ARCH_X86') sections.push({ arch: 'I386', table: syscallTables().I386 });
    else if (a === 'SCMP_ARCH_X32') sections.push({ arch: 'X32', table: syscallTables().X32 });
    // Other architectures cannot run on this machine; docker's archMap names them all.
  }
  if (!sections.some((s) => s.arch === 'X86_64')) throw new InvalidArgumentError(`seccomp: the profile does not cover this machine's architecture (SCMP_ARCH_X86_64); it lists ${p.architectures.join(', ')}`);
  const labels = new Map<string, number>();
  for (const s of [...sections].reverse()) {
    const start = dispatch(e, rulesByNumber(p.rules, s.table), defaultRet, newerRet);
    if (s.arch === 'I386') {
      e.goto(start);
      labels.set(s.arch, e.load(SECCOMP_DATA.nr));
    } else labels.set(s.arch, start);
  }
  // x86_64 and x32 share AUDIT_ARCH_X86_64: x32 numbers have bit 30 set.
  const x32 = labels.get('X32') ?? badArch;
  const x64Body = labels.get('X86_64') as number;
  e.jump(BPF.JMP_JGE_K, X32_SYSCALL_BIT, x32, x64Body);
  const x64 = e.load(SECCOMP_DATA.nr);
  const i386 = labels.get('I386') ?? badArch;
  e.jump(BPF.JMP_JEQ_K, AUDIT_ARCH.I386, i386, badArch);
  e.jump(BPF.JMP_JEQ_K, AUDIT_ARCH.X86_64, x64, e.next());
}

/** Encodes instructions as struct sock_filter[] (u16 code, u8 jt, u8 jf, u32 k; native endian). */
export function encodeProgram(program: Instruction[]): Buffer {
  const b = Buffer.alloc(program.length * 8);
  program.forEach((ins, i) => {
    b.writeUInt16LE(ins.code, i * 8);
    b.writeUInt8(ins.jt, i * 8 + 2);
    b.writeUInt8(ins.jf, i * 8 + 3);
    b.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
  });
  return b;
}

export function actionValue(a: SeccompAction, errno: number): number {
  switch (a) {
    case 'SCMP_ACT_ALLOW':
      return SECCOMP_RET.ALLOW;
    case 'SCMP_ACT_ERRNO':
      return (SECCOMP_RET.ERRNO | (errno & 0xffff)) >>> 0;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return SECCOMP_RET.KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return SECCOMP_RET.KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return SECCOMP_RET.TRAP;
    case 'SCMP_ACT_TRACE':
      return (SECCOMP_RET.TRACE | (errno & 0xffff)) >>> 0;
    case 'SCMP_ACT_LOG':
      return SECCOMP_RET.LOG;
  }
}

interface SyscallRules {
  nr: number;
  rules: ResolvedRule[];
}

/**
 * Groups the rules by syscall number for one table. Rules with argument conditions come first in
 * profile order, then the first unconditional one: a specific rule wins over a blanket one, as in
 * libseccomp. Names the table lacks are skipped (docker's profile names every ABI's syscalls).
 */
function rulesByNumber(rules: ResolvedRule[], table: Readonly<Record<string, number>>): SyscallRules[] {
  const byNr = new Map<number, ResolvedRule[]>();
  for (const r of rules) {
    for (const name of r.names) {
      const nr = Object.hasOwn(table, name) ? table[name] : undefined;
      if (nr === undefined) continue;
      const list = byNr.get(nr) ?? [];
      list.push(r);
      byNr.set(nr, list);
    }
  }
  return [...byNr.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([nr, list]) => {
      const conditional = list.filter((r) => r.args.length > 0);
      const blanket = list.find((r) => r.args.length === 0);
      return { nr, rules: blanket === undefined ? conditional : [...conditional, blanket] };
    });
}

/**
 * The syscall search and rule blocks of one ABI; expects A = nr. Returns its first instruction.
 * The number space is cut into intervals that lead to the same place (a run of allowed syscalls
 * shares one `ret ALLOW`), and a binary search over the interval starts finds the one holding nr:
 * docker's profile comes out at a few hundred instructions and about eight comparisons a syscall.
 * Numbers no rule names get the default action, or `newerRet` above the highest one named.
 */
function dispatch(e: Emitter, syscalls: SyscallRules[], defaultRet: number, newerRet: number): number {
  const blocks = new Map<number, number>();
  for (const s of [...syscalls].reverse()) blocks.set(s.nr, ruleBlock(e, s.rules, defaultRet));
  const intervals: { start: number; label: number }[] = [];
  const add = (start: number, label: number): void => {
    if (intervals[intervals.length - 1]?.start === start) intervals.pop();
    if (intervals[intervals.length - 1]?.label === label) return;
    intervals.push({ start, label });
  };
  add(0, defaultRet);
  for (const s of syscalls) {
    add(s.nr, blocks.get(s.nr) as number);
    add(s.nr + 1, defaultRet);
  }
  if (syscalls.length > 0) add(syscalls[syscalls.length - 1].nr + 1, newerRet);
  return searchTree(e, intervals, 0, intervals.length);
}

function searchTree(e: Emitter, intervals: { start: number; label: number }[], lo: number, hi: number): number {
  if (hi - lo === 1) return intervals[lo].label;
  const mid = (lo + hi) >> 1;
  const right = searchTree(e, intervals, mid, hi);
  const left = searchTree(e, intervals, lo, mid);
  return e.jump(BPF.JMP_JGE_K, intervals[mid].start, right, left);
}

function ruleBlock(e: Emitter, rules: ResolvedRule[], defaultRet: number): number {
  let fail = defaultRet;
  for (const r of [...rules].reverse()) {
    let pass = e.ret(actionValue(r.action, r.errnoRet ?? EPERM));
    for (const a of [...r.args].reverse()) pass = argCheck(e, a, pass, fail);
    fail = pass;
  }
  return fail;
}

const split = (v: number | bigint): [number, number] => {
  const b = BigInt(v);
  return [Number((b >> 32n) & 0xffffffffn), Number(b & 0xffffffffn)];
};

/**
 * One 64-bit argument comparison as two 32-bit ones (classic BPF loads 32 bits; the high word of
 * args[i] is at +4 on little-endian machines). Emitted backwards: returns the first instruction.
 */
function argCheck(e: Emitter, a: SeccompArg, pass: number, fail: number): number {
  const lo = SECCOMP_DATA.args + 8 * a.index;
  const hi = lo + 4;
  const [vhi, vlo] = split(a.value);
  switch (a.op) {
    case 'SCMP_CMP_EQ':
      e.jump(BPF.JMP_JEQ_K, vlo, pass, fail);
      e.load(lo);
      e.jump(BPF.JMP_JEQ_K, vhi, e.next(), fail);
      return e.load(hi);
    case 'SCMP_CMP_NE':
      e.jump(BPF.JMP_JEQ_K, vlo, fail, pass);
      e.load(lo);
      e.jump(BPF.JMP_JEQ_K, vhi, e.next(), pass);
      return e.load(hi);
    case 'SCMP_CMP_MASKED_EQ': {
      const [dhi, dlo] = split(a.valueTwo ?? 0);
      e.jump(BPF.JMP_JEQ_K, dlo & vlo, pass, fail);
      e.and(vlo);
      e.load(lo);
      e.jump(BPF.JMP_JEQ_K, dhi & vhi, e.next(), fail);
      e.and(vhi);
      return e.load(hi);
    }
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
      e.jump(a.op === 'SCMP_CMP_GT' ? BPF.JMP_JGT_K : BPF.JMP_JGE_K, vlo, pass, fail);
      e.load(lo);
      e.jump(BPF.JMP_JEQ_K, vhi, e.next(), fail);
      e.jump(BPF.JMP_JGT_K, vhi, pass, e.next());
      return e.load(hi);
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE':
      // lo < v ⇔ !(lo >= v); lo <= v ⇔ !(lo > v)
      e.jump(a.op === 'SCMP_CMP_LT' ? BPF.JMP_JGE_K : BPF.JMP_JGT_K, vlo, fail, pass);
      e.load(lo);
      e.jump(BPF.JMP_JEQ_K, vhi, e.next(), fail);
      e.jump(BPF.JMP_JGE_K, vhi, e.next(), pass);
      return e.load(hi);
  }
}

/**
 * Writes a program from its last instruction to its first. A label is an instruction's distance
 * from the end; a jump emitted now reaches label L with offset (length - L - 1). Conditional jumps
 * have 8-bit offsets: a target further away goes through an unconditional `ja` (32-bit offset)
 * placed right after the jump.
 */
class Emitter {
  private readonly rev: Instruction[] = [];
  private readonly rets = new Map<number, number>();

  /** The label of the instruction emitted last, i.e. the one after whatever is emitted next. */
  next(): number {
    return this.rev.length - 1;
  }

  private push(ins: Instruction): number {
    this.rev.push(ins);
    if (this.rev.length > 4096) throw new InvalidArgumentError('seccomp: the profile compiles to more than 4096 BPF instructions');
    return this.rev.length - 1;
  }

  /** A `ret`, shared with an identical one already emitted when a jump can reach it. */
  ret(k: number): number {
    const known = this.rets.get(k);
    if (known !== undefined) return known;
    const l = this.push({ code: BPF.RET_K, jt: 0, jf: 0, k: k >>> 0 });
    this.rets.set(k, l);
    return l;
  }

  load(offset: number): number {
    return this.push({ code: BPF.LD_W_ABS, jt: 0, jf: 0, k: offset });
  }

  /** Makes `label` the instruction after whatever is emitted next: nothing if it is already, else a `ja`. */
  goto(label: number): number {
    if (label === this.next()) return label;
    return this.push({ code: BPF.JMP_JA, jt: 0, jf: 0, k: this.offset(label) });
  }

  and(k: number): number {
    return this.push({ code: BPF.ALU_AND_K, jt: 0, jf: 0, k: k >>> 0 });
  }

  jump(code: number, k: number, jt: number, jf: number): number {
    // Every `ja` placed here moves the other target one instruction further away: a target at
    // exactly 255 becomes 256 once the other side got its `ja` (what --cap-add ALL ran into with
    // docker's profile). So both are checked again until both fit; at most two `ja` are placed.
    for (;;) {
      if (this.offset(jt) > 255) jt = this.push({ code: BPF.JMP_JA, jt: 0, jf: 0, k: this.offset(jt) });
      else if (this.offset(jf) > 255) jf = this.push({ code: BPF.JMP_JA, jt: 0, jf: 0, k: this.offset(jf) });
      else break;
    }
    return this.push({ code, jt: this.offset(jt), jf: this.offset(jf), k: k >>> 0 });
  }

  private offset(label: number): number {
    return this.rev.length - label - 1;
  }

  program(): Instruction[] {
    return [...this.rev].reverse();
  }
}

/** The syscall tables (generated/), made on first use: a run whose program is kept never needs them. */
const syscallTables = lazy(() => ({ X86_64: x86_64Syscalls(), I386: i386Syscalls(), X32: x32Syscalls(), AARCH64: aarch64Syscalls() }));

/**
 * What a compiled program depends on besides its profile: this compiler's code and its syscall
 * tables, as one digest (of the functions' source text, the tables' included, so any change to
 * them is a new identity). A program kept under a key made with it (program-cache.ts) is never
 * taken by another compiler.
 */
export const compilerIdentity = lazy(() =>
  sha256Of(
    [compileFilter, x86Family, encodeProgram, actionValue, rulesByNumber, dispatch, searchTree, ruleBlock, argCheck, Emitter, x86_64Syscalls, i386Syscalls, x32Syscalls, aarch64Syscalls]
      .map(String)
      .join('\n') + JSON.stringify([BPF, SECCOMP_RET, AUDIT_ARCH, SECCOMP_DATA, X32_SYSCALL_BIT]),
  ),
);
