import { sys, syscallError } from './libc.js';

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/**
 * flock(2) on a worker thread, so a wait for another process's lock never blocks the event loop.
 * The kernel drops the lock when the process dies, even by kill -9.
 */
export function flock(fd: number, operation: number): Promise<void> {
  return new Promise((resolve, reject) => {
    sys().flockAsync(fd, operation, (_err, ret) => {
      if (ret < 0) reject(syscallError('flock', undefined, -ret));
      else resolve();
    });
  });
}

export function flockSync(fd: number, operation: number): boolean {
  const ret = sys().flock(fd, operation);
  if (ret < 0) {
    const e = syscallError('flock', undefined, -ret);
    if (e.code === 'EWOULDBLOCK' || e.code === 'EAGAIN') return false;
    throw e;
  }
  return true;
}

/** Whether a process exists (EPERM means it does, owned by someone else): a dead tsbuild's leftovers are swept by this. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
