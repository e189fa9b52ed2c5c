import { BPF, type Instruction } from './bpf.js';

/** struct seccomp_data, as the kernel hands it to a filter. */
export interface SeccompData {
  nr: number;
  arch: number;
  instructionPointer?: bigint;
  args?: (number | bigint)[];
}

/**
 * Runs a classic BPF program on seccomp_data, to check compiled filters without loading them.
 * Implements the instructions the compiler emits, with the kernel's rules: jumps only forward,
 * loads aligned 32-bit words inside seccomp_data, and the program must end in a ret.
 */
export function runFilter(program: Instruction[], data: SeccompData): number {
  if (!checked.has(program)) {
    checkProgram(program);
    checked.add(program);
  }
  const mem = Buffer.alloc(64);
  mem.writeUInt32LE(data.nr >>> 0, 0);
  mem.writeUInt32LE(data.arch >>> 0, 4);
  mem.writeBigUInt64LE(data.instructionPointer ?? 0n, 8);
  (data.args ?? []).forEach((a, i) => mem.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), 16 + 8 * i));
  let acc = 0;
  let pc = 0;
  for (let steps = 0; steps <= program.length; steps++) {
    const ins = program[pc];
    if (ins === undefined) throw new Error(`bpf: fell off the end at ${pc}`);
    switch (ins.code) {
      case BPF.LD_W_ABS:
        if (ins.k % 4 !== 0 || ins.k + 4 > 64) throw new Error(`bpf: bad load offset ${ins.k} at ${pc}`);
        acc = mem.readUInt32LE(ins.k);
        pc++;
        break;
      case BPF.ALU_AND_K:
        acc = (acc & ins.k) >>> 0;
        pc++;
        break;
      case BPF.JMP_JA:
        pc += 1 + ins.k;
        break;
      case BPF.JMP_JEQ_K:
        pc += 1 + (acc === ins.k >>> 0 ? ins.jt : ins.jf);
        break;
      case BPF.JMP_JGT_K:
        pc += 1 + (acc > ins.k >>> 0 ? ins.jt : ins.jf);
        break;
      case BPF.JMP_JGE_K:
        pc += 1 + (acc >= ins.k >>> 0 ? ins.jt : ins.jf);
        break;
      case BPF.RET_K:
        return ins.k >>> 0;
      default:
        throw new Error(`bpf: unknown opcode 0x${ins.code.toString(16)} at ${pc}`);
    }
  }
  throw new Error('bpf: no ret reached');
}

const checked = new WeakSet<Instruction[]>();

/**
 * What the kernel's checker (bpf_check_classic) and struct sock_filter demand of a program
 * before it runs: at most BPF_MAXINSNS (4096) instructions, 8-bit conditional offsets and 32-bit
 * `k`, every jump landing inside the program.
 */
export function checkProgram(program: Instruction[]): void {
  if (program.length === 0 || program.length > 4096) throw new Error(`bpf: ${program.length} instructions (1 to 4096 allowed)`);
  program.forEach((ins, pc) => {
    const u8 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 255;
    if (!u8(ins.jt) || !u8(ins.jf)) throw new Error(`bpf: jump offsets ${ins.jt}/${ins.jf} at ${pc} do not fit in 8 bits`);
    if (!Number.isInteger(ins.k) || ins.k < -0x80000000 || ins.k > 0xffffffff) throw new Error(`bpf: k ${ins.k} at ${pc} does not fit in 32 bits`);
    const targets = ins.code === BPF.JMP_JA ? [ins.k] : isConditional(ins.code) ? [ins.jt, ins.jf] : [];
    for (const t of targets) if (pc + 1 + t >= program.length) throw new Error(`bpf: jump at ${pc} leaves the program`);
  });
}

function isConditional(code: number): boolean {
  return code === BPF.JMP_JEQ_K || code === BPF.JMP_JGT_K || code === BPF.JMP_JGE_K;
}
