import { check, sys } from './libc.js';

/**
 * setgroups(2), setresgid(2) and setresuid(2) as raw syscalls: they change the calling thread
 * only. glibc's wrappers apply a change to every thread of the process (POSIX semantics), by
 * signalling each thread and waiting for it: in Node, with its pool and V8 threads, that costs
 * about a millisecond per call. A process that changes credentials only to execve next needs
 * just the execve'ing thread's: execve ends every other thread (execve(2)).
 */
const NR: Record<string, { setgroups: number; setresuid: number; setresgid: number }> = {
  x64: { setgroups: 116, setresuid: 117, setresgid: 119 },
  arm64: { setgroups: 159, setresuid: 147, setresgid: 149 },
  riscv64: { setgroups: 159, setresuid: 147, setresgid: 149 },
};

function numbers(): { setgroups: number; setresuid: number; setresgid: number } {
  const n = NR[process.arch];
  if (n === undefined) throw new Error(`thread credentials: unsupported architecture ${process.arch}`);
  return n;
}

/** True where the thread-only calls are available; elsewhere use setGroups/setResGid/setResUid. */
export function threadCredentialsSupported(): boolean {
  return NR[process.arch] !== undefined;
}

export function setThreadGroups(gids: number[]): void {
  const list = Uint32Array.from(gids);
  check(sys().syscall(numbers().setgroups, 'long', list.length, 'uint32_t *', list.length > 0 ? list : null), 'setgroups');
}

export function setThreadResGid(gid: number): void {
  const g = gid >>> 0;
  check(sys().syscall(numbers().setresgid, 'uint32_t', g, 'uint32_t', g, 'uint32_t', g), 'setresgid');
}

export function setThreadResUid(uid: number): void {
  const u = uid >>> 0;
  check(sys().syscall(numbers().setresuid, 'uint32_t', u, 'uint32_t', u, 'uint32_t', u), 'setresuid');
}
