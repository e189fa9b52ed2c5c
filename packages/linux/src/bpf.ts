import { closeSync, openSync } from 'node:fs';
import { lazy } from '@tsbuild/oci';
import { koffi } from './ffi.js';
import { check, sys } from './libc.js';

/** bpf(2)'s number (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h). */
const SYS_BPF: Record<string, number> = { x64: 321, arm64: 280, riscv64: 280, loong64: 280, ia32: 357, arm: 386, s390x: 351, ppc64: 361 };

const BPF_PROG_LOAD = 5;
const BPF_PROG_ATTACH = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
const BPF_CGROUP_DEVICE = 6;
/**
 * Programs of every cgroup on the path run, each must allow: a program attached above ours (by
 * systemd, or a --cgroup-parent's owner) stays in force and does not stop ours from attaching.
 */
const BPF_F_ALLOW_MULTI = 2;

// union bpf_attr, the BPF_PROG_LOAD and BPF_PROG_ATTACH members (include/uapi/linux/bpf.h); the
// pointers are __aligned_u64, i.e. 8-byte pointers on the 64-bit architectures. The tail is kept
// zero (the kernel refuses non-zero bytes past the fields it knows). Unnamed: koffi's type
// names are global (see file-times.ts).
const progLoadAttr = lazy(() =>
  koffi().pointer(
    koffi().struct({
      prog_type: 'uint32_t',
      insn_cnt: 'uint32_t',
      insns: 'void *',
      license: 'void *',
      log_level: 'uint32_t',
      log_size: 'uint32_t',
      log_buf: 'void *',
      kern_version: 'uint32_t',
      prog_flags: 'uint32_t',
      tail: koffi().array('uint8_t', 64),
    }),
  ),
);
const progAttachAttr = lazy(() =>
  koffi().pointer(koffi().struct({ target_fd: 'uint32_t', attach_bpf_fd: 'uint32_t', attach_type: 'uint32_t', attach_flags: 'uint32_t', replace_bpf_fd: 'uint32_t', tail: koffi().array('uint8_t', 44) })),
);

function bpfNumber(): number {
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) throw new Error(`bpf: unsupported architecture ${process.arch}`);
  return nr;
}

/**
 * Loads `instructions` (struct bpf_insn, 8 bytes each) as a BPF_PROG_TYPE_CGROUP_DEVICE program
 * and attaches it to the cgroup v2 directory `cgroupDir` (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI),
 * as runc does for the devices rules of a container. The program stays attached until the cgroup
 * is removed; our fd on it is closed here. A verifier rejection is thrown with the verifier's log.
 */
export function attachDeviceFilter(cgroupDir: string, instructions: Buffer): void {
  const nr = bpfNumber();
  const license = Buffer.from('Apache\0');
  const log = Buffer.alloc(16384);
  const load = (withLog: boolean): number =>
    Number(
      sys().syscall(nr, 'int', BPF_PROG_LOAD, progLoadAttr(), {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: instructions.length / 8,
        insns: instructions,
        license,
        log_level: withLog ? 1 : 0,
        log_size: withLog ? log.length : 0,
        log_buf: withLog ? log : null,
        kern_version: 0,
        prog_flags: 0,
        tail: new Array<number>(64).fill(0),
      }, 'unsigned int', 112),
    );
  let prog = load(false);
  if (prog < 0) {
    const first = koffi().errno();
    if (first === 13 || first === 22) {
      // EACCES / EINVAL: the verifier said no; load again to read why.
      prog = load(true);
      if (prog < 0) {
        const why = log.toString('utf8', 0, Math.max(0, log.indexOf(0))).trim().split('\n').slice(-2).join('; ');
        const e = new Error(`bpf(BPF_PROG_LOAD) device filter: ${why || `errno ${first}`}`);
        throw e;
      }
    } else check(prog, 'bpf(BPF_PROG_LOAD)');
  }
  try {
    const fd = openSync(cgroupDir, 'r');
    try {
      check(
        sys().syscall(nr, 'int', BPF_PROG_ATTACH, progAttachAttr(), {
          target_fd: fd,
          attach_bpf_fd: prog,
          attach_type: BPF_CGROUP_DEVICE,
          attach_flags: BPF_F_ALLOW_MULTI,
          replace_bpf_fd: 0,
          tail: new Array<number>(44).fill(0),
        }, 'unsigned int', 64),
        'bpf(BPF_PROG_ATTACH)',
        cgroupDir,
      );
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(prog);
  }
}
