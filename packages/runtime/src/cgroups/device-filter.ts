import type { DeviceRule } from './cgroup-resources.js';

/**
 * The devices "controller" of cgroup v2 is an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE
 * attached to the cgroup (Documentation/admin-guide/cgroup-v2.rst, "Device controller"). The
 * kernel runs it on every open and mknod of a device node with a struct bpf_cgroup_dev_ctx
 * (include/uapi/linux/bpf.h):
 *
 *     u32 access_type;  // (access << 16) | type;  type BLOCK 1, CHAR 2;  access MKNOD 1, READ 2, WRITE 4
 *     u32 major;
 *     u32 minor;
 *
 * and allows the access when it returns 1. The program built here is runc's
 * (libcontainer/cgroups/devices/devicefilter.go): load the fields once, then one block per allow
 * rule that jumps to the next block on a mismatch and returns 1 at its end; after the last block,
 * return 0 (deny). Every rule is an allow rule on a deny-all default, so their order does not
 * matter.
 */

const BPF_DEVCG_DEV_BLOCK = 1;
const BPF_DEVCG_DEV_CHAR = 2;
const ACCESS = { m: 1, r: 2, w: 4 } as const;

// Opcodes (include/uapi/linux/bpf_common.h, bpf.h): class | op | source.
const LDX_MEM_W = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT = 0x95; // BPF_JMP | BPF_EXIT

/** One eBPF instruction (struct bpf_insn): opcode, dst and src registers, offset, immediate. */
export type Insn = [code: number, dst: number, src: number, off: number, imm: number];

/** The program for `rules` (allow rules, everything else denied), as instructions. */
export function deviceFilterInstructions(rules: readonly DeviceRule[]): Insn[] {
  const prog: Insn[] = [
    [LDX_MEM_W, 2, 1, 0, 0], // r2 = ctx->access_type
    [ALU32_AND_K, 2, 0, 0, 0xffff], // r2 = type
    [LDX_MEM_W, 3, 1, 0, 0], // r3 = ctx->access_type
    [ALU32_RSH_K, 3, 0, 0, 16], // r3 = access
    [LDX_MEM_W, 4, 1, 4, 0], // r4 = ctx->major
    [LDX_MEM_W, 5, 1, 8, 0], // r5 = ctx->minor
  ];
  for (const rule of rules) {
    const block: Insn[] = [];
    // Each check jumps past the rest of the block (filled in once the block's length is known).
    const checks: number[] = [];
    const check = (insn: Insn): void => {
      checks.push(block.length);
      block.push(insn);
    };
    check([JMP_JNE_K, 2, 0, 0, rule.type === 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR]);
    const allowed = [...rule.access].reduce((a, c) => a | ACCESS[c as keyof typeof ACCESS], 0);
    if (allowed !== 7) {
      // Any requested access bit outside the rule's: not this rule.
      block.push([ALU32_MOV_X, 1, 3, 0, 0]);
      block.push([ALU32_AND_K, 1, 0, 0, ~allowed & 7]);
      check([JMP_JNE_K, 1, 0, 0, 0]);
    }
    if (rule.major !== -1) check([JMP_JNE_K, 4, 0, 0, rule.major | 0]);
    if (rule.minor !== -1) check([JMP_JNE_K, 5, 0, 0, rule.minor | 0]);
    block.push([ALU64_MOV_K, 0, 0, 0, 1]);
    block.push([JMP_EXIT, 0, 0, 0, 0]);
    for (const i of checks) (block[i] as Insn)[3] = block.length - i - 1;
    prog.push(...block);
  }
  prog.push([ALU64_MOV_K, 0, 0, 0, 0], [JMP_EXIT, 0, 0, 0, 0]);
  return prog;
}

/** The instructions as the kernel reads them: 8 bytes each, little-endian (x86-64, aarch64). */
export function encodeInstructions(prog: readonly Insn[]): Buffer {
  const b = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, dst, src, off, imm], i) => {
    b.writeUInt8(code, i * 8);
    b.writeUInt8((src << 4) | dst, i * 8 + 1);
    b.writeInt16LE(off, i * 8 + 2);
    b.writeInt32LE(imm | 0, i * 8 + 4);
  });
  return b;
}
