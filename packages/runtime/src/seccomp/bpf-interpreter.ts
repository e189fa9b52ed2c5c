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
