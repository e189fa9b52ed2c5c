import { closeSync, openSync } from 'node:fs';
import { check, sys } from './libc.js';

const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
const BPF_CGROUP_DEVICE = 6;
/**
 * Programs of every cgroup on the path run, each must allow: a program attached above ours (by
 * systemd, or a --cgroup-parent's owner) stays in force and does not stop ours from attaching.
 */
const BPF_F_ALLOW_MULTI = 2;

/**
 * Loads `instructions` (struct bpf_insn, 8 bytes each) as a BPF_PROG_TYPE_CGROUP_DEVICE program
 * and attaches it to the cgroup v2 directory `cgroupDir` (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI),
 * as runc does for the devices rules of a container. The program stays attached until the cgroup
 * is removed; our fd on it is closed here. A verifier rejection is thrown with the verifier's log.
 */
export function attachDeviceFilter(cgroupDir: string, instructions: Buffer): void {
  const license = Buffer.from('Apache\0');
  const log = Buffer.alloc(16384);
  let prog = sys().bpfProgLoad(BPF_PROG_TYPE_CGROUP_DEVICE, instructions, license, null, 0);
  if (prog < 0) {
    const first = -prog;
    if (first === 13 || first === 22) {
      // EACCES / EINVAL: the verifier said no; load again to read why.
      prog = sys().bpfProgLoad(BPF_PROG_TYPE_CGROUP_DEVICE, instructions, license, log, 1);
      if (prog < 0) {
        const why = log.toString('utf8', 0, Math.max(0, log.indexOf(0))).trim().split('\n').slice(-2).join('; ');
        throw new Error(`bpf(BPF_PROG_LOAD) device filter: ${why || `errno ${first}`}`);
      }
    } else check(prog, 'bpf(BPF_PROG_LOAD)');
  }
  try {
    const fd = openSync(cgroupDir, 'r');
    try {
      check(sys().bpfProgAttach(fd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI), 'bpf(BPF_PROG_ATTACH)', cgroupDir);
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(prog);
  }
}
