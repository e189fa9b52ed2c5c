import { open } from 'node:fs/promises';
import { LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, flock, flockSync } from '@tsbuild/linux';

export type LockMode = 'shared' | 'exclusive';

/**
 * flock(2) on one file, for use between processes. Each holder opens its own file description,
 * so holders in one process also exclude each other as flock(2) specifies (locks belong to open
 * file descriptions, not processes). The kernel drops a lock when its holder dies, even by
 * kill -9: a crashed tsbuild never leaves the store locked.
 *
 * flock(2) has no writer preference: a shared request is granted while an exclusive one waits,
 * so prune waits for a moment when no build holds the lock at all.
 *
 * Not reentrant: taking 'exclusive' while this process already holds the same lock waits forever.
 *
 * A contended lock is waited for by a blocking flock(2) on a libuv pool thread. The pool is small
 * (4 threads) and also serves node:fs, so at most one waiter per FileLock blocks a thread; the
 * others queue here, in-process, behind it.
 */
export class FileLock {
  private waiters: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  async with<T>(mode: LockMode, fn: () => Promise<T>): Promise<T> {
    const fh = await open(this.path, 'a+', 0o644);
    try {
      await this.acquire(fh.fd, mode === 'shared' ? LOCK_SH : LOCK_EX);
      try {
        return await fn();
      } finally {
        flockSync(fh.fd, LOCK_UN);
      }
    } finally {
      await fh.close();
    }
  }

  private async acquire(fd: number, op: number): Promise<void> {
    if (flockSync(fd, op | LOCK_NB)) return;
    const turn = this.waiters.then(() => flock(fd, op));
    this.waiters = turn.catch(() => undefined);
    await turn;
  }
}
