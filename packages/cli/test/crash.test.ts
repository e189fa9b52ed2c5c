import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore, mountsUnder, processesMatching } from './harness.js';

async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('kill -9 in the middle of a build', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('during RUN: no process or mount outlives it, fsck passes, a rebuild succeeds', async () => {
    // A sleep length no other test uses, so the processes it starts can be told apart.
    const secs = String(100_000 + (process.pid % 100_000));
    const ctx = await t.context({ Dockerfile: `FROM busybox\nRUN sleep ${secs} & echo started > /started; sleep ${secs}\n` });
    const child = t.spawn(['build', '-t', 'crashy', ctx]);
    try {
      await waitFor(() => processesMatching(`sleep ${secs}`).length >= 2, 20_000, 'the RUN step to start');
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.on('close', r));
    await waitFor(() => processesMatching(`sleep ${secs}`).length === 0, 5_000, 'the container processes to die');
    expect(mountsUnder(t.tmp)).toEqual([]);
    expect((await t.run(['fsck'])).code).toBe(0);
    const again = await t.run(['build', '-t', 'after', await t.context({ Dockerfile: 'FROM busybox\nRUN echo ok > /ok\n' })]);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    // the killed build left no image behind
    const names = (JSON.parse((await t.run(['images', '--format', 'json'])).stdout) as { name: string }[]).map((i) => i.name);
    expect(names).not.toContain('docker.io/library/crashy:latest');
  });

  it('while a layer is being written: fsck passes, prune cleans up, a rebuild succeeds', async () => {
    // A RUN that leaves ~200 MB of incompressible data, so the layer takes a while to compress.
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN head -c 200000000 /dev/urandom > /big\n' });
    const child = t.spawn(['build', '-t', 'big', ctx]);
    const ingest = path.join(t.root, 'ingest');
    try {
      await waitFor(async () => existsSync(ingest) && (await fsp.readdir(ingest)).length > 0, 60_000, 'the layer blob to start');
      await sleep(150);
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.on('close', r));
    expect(mountsUnder(t.tmp)).toEqual([]);
    const fsck = await t.run(['fsck']);
    expect(fsck.stdout).toMatch(/0 problem\(s\)/);
    expect(fsck.code).toBe(0);
    const prune = await t.run(['prune']);
    expect(prune.code).toBe(0);
    expect(await fsp.readdir(ingest)).toEqual([]);
    const snaps = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout) as { kind: string }[];
    expect(snaps.filter((s) => s.kind !== 'committed')).toEqual([]);
    const again = await t.run(['build', '-t', 'big', ctx]);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    expect((await t.run(['fsck'])).code).toBe(0);
  });
});
