import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FileLock } from './file-lock.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'store-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('shared holders run together; exclusive waits for them and excludes everyone', async () => {
  const a = new FileLock(join(dir, 'lock'));
  // A second FileLock on the same file stands for another process: its own open file description.
  const b = new FileLock(join(dir, 'lock'));
  const events: string[] = [];
  let sharedInside = 0;
  let maxShared = 0;
  const shared = (l: FileLock, tag: string) =>
    l.with('shared', async () => {
      sharedInside++;
      maxShared = Math.max(maxShared, sharedInside);
      await sleep(100);
      sharedInside--;
      events.push(`${tag} done`);
    });
  const s1 = shared(a, 's1');
  await sleep(5);
  const s2 = shared(b, 's2');
  await sleep(20);
  const ex = b.with('exclusive', async () => {
    events.push(`exclusive in (shared holders: ${sharedInside})`);
    await sleep(50);
    const s3 = shared(a, 's3'); // asked for while the exclusive lock is held: waits for it
    await sleep(50);
    events.push('exclusive done');
    return { s3 }; // wrapped: returning the promise itself would make the lock wait for s3
  });
  await Promise.all([s1, s2]);
  await (await ex).s3;
  expect(maxShared).toBe(2);
  expect(events).toEqual(['s1 done', 's2 done', 'exclusive in (shared holders: 0)', 'exclusive done', 's3 done']);
});

it('many waiters on one contended lock do not starve the libuv pool', async () => {
  const holder = new FileLock(join(dir, 'lock'));
  const waiter = new FileLock(join(dir, 'lock'));
  let count = 0;
  let pending: Promise<void>[] = [];
  await holder.with('exclusive', async () => {
    pending = Array.from({ length: 10 }, () => waiter.with('exclusive', async () => void count++));
    await sleep(50);
    // node:fs shares the 4-thread pool; it still works while ten callers wait (one blocks a thread).
    expect(await readdir(dir)).toEqual(['lock']);
    expect(count).toBe(0);
  });
  await Promise.all(pending);
  expect(count).toBe(10);
});
