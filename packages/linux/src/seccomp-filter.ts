import { lazy } from '@tsbuild/oci';
import { koffi } from './ffi.js';
import { check, sys } from './libc.js';

// struct sock_fprog (linux/filter.h): an unsigned short count, then a pointer to the instructions.
// Unnamed: koffi's type names are global (see file-times.ts).
const sockFprogPointer = lazy(() => koffi().pointer(koffi().struct({ len: 'uint16_t', filter: 'void *' })));

const PR_SET_NO_NEW_PRIVS = 38;
const PR_SET_SECCOMP = 22;
const SECCOMP_MODE_FILTER = 2;

/** One classic-BPF instruction is 8 bytes: u16 code, u8 jt, u8 jf, u32 k (struct sock_filter). */
export const BPF_INSTRUCTION_SIZE = 8;

/**
 * Installs a seccomp filter (seccomp(2), through prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER), which
 * has the same number on every architecture). `program` holds struct sock_filter entries. The
 * kernel requires no_new_privs or CAP_SYS_ADMIN in the caller's user namespace; the filter applies
 * to the calling thread and survives execve.
 */
export function loadSeccompFilter(program: Buffer): void {
  if (program.length === 0 || program.length % BPF_INSTRUCTION_SIZE !== 0 || program.length / BPF_INSTRUCTION_SIZE > 4096) {
    throw new Error(`seccomp: a filter must hold 1 to 4096 instructions of 8 bytes, got ${program.length} bytes`);
  }
  const fprog = { len: program.length / BPF_INSTRUCTION_SIZE, filter: program };
  check(sys().prctl(PR_SET_SECCOMP, 'unsigned long', SECCOMP_MODE_FILTER, sockFprogPointer(), fprog, 'unsigned long', 0, 'unsigned long', 0), 'prctl(PR_SET_SECCOMP)');
}

/** PR_SET_NO_NEW_PRIVS: execve can no longer grant privileges (setuid bits, file capabilities). */
export function setNoNewPrivileges(): void {
  check(sys().prctl(PR_SET_NO_NEW_PRIVS, 'unsigned long', 1, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0), 'prctl(PR_SET_NO_NEW_PRIVS)');
}
