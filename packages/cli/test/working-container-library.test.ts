// The typed library over the same store state as the CLI (issue 16 point 3): the README's program
// that builds an image without a Dockerfile, and containers passing between TypeScript and `tsbuild`.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { WorkingContainer, editConfig } from '@tsbuild/container';
import { HELLO, TestStore } from './harness.js';

const t = new TestStore();
let env: { store: Store; snapshotter: OverlaySnapshotter };

describe('WorkingContainer as a library', () => {
  beforeAll(async () => {
    await t.importBusybox();
    env = { store: await Store.open(t.root), snapshotter: await OverlaySnapshotter.open(path.join(t.root, 'snapshots')) };
  });
  afterAll(async () => {
    await t.run(['rm', '--all']);
    await t.cleanup();
  });

  it('builds an image without a Dockerfile (the README program)', async () => {
    const wc = await WorkingContainer.from(env, 'busybox', { name: 'greeter' });
    await wc.run(['sh', '-c', 'echo hello > /greeting'], { stdout: 'inherit' });
    await wc.copy([path.join(HELLO, 'greet.sh')], '/app/');
    await wc.updateConfig((c) => {
      c.config = editConfig(c.config, c.annotations, { cmd: '["/bin/cat","/greeting"]', workingDir: '/app' }).config;
    });
    const { id } = await wc.commit({ name: 'greeter:1', rm: true });
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    const r = await t.run(['run', '--rm', 'greeter:1']);
    expect(r.stdout).toBe('hello\n');
    expect((await t.run(['run', '--rm', 'greeter:1', 'ls', '/app'])).stdout).toBe('greet.sh\n');
    expect((await t.run(['containers', '--quiet'])).stdout).toBe('');
  });

  it('a container made by the CLI is opened from TypeScript, and the other way round', async () => {
    const made = await t.run(['from', '--name', 'from-cli', 'busybox']);
    expect(made.code).toBe(0);
    const wc = await WorkingContainer.open(env, 'from-cli');
    await wc.run(['sh', '-c', 'echo ts > /by-ts']);
    expect((await t.run(['run', 'from-cli', '--', 'cat', '/by-ts'])).stdout).toBe('ts\n');

    const ours = await WorkingContainer.from(env, 'busybox', { name: 'from-ts' });
    expect((await t.run(['run', 'from-ts', '--', 'sh', '-c', 'echo cli > /by-cli'])).code).toBe(0);
    await ours.copy([path.join(HELLO, 'index.html')], '/www/');
    const commit = await t.run(['commit', '-q', '--rm', 'from-ts', 'both:1']);
    expect(commit.code).toBe(0);
    expect((await t.run(['run', '--rm', 'both:1', 'sh', '-c', 'cat /by-cli; ls /www'])).stdout).toBe('cli\nindex.html\n');
    await expect(WorkingContainer.open(env, 'from-ts')).rejects.toThrow('container from-ts: no such working container');
  });

  it('prune removes the snapshot of a container whose record a crash never wrote, and keeps the others', async () => {
    const kept = await WorkingContainer.from(env, 'busybox', { name: 'kept' });
    const lost = await WorkingContainer.from(env, 'busybox', { name: 'lost' });
    const lostKey = lost.snapshotKey;
    // As a kill between the snapshot's prepare and the record's write in `from` leaves it.
    await fsp.rm(path.join(t.root, 'containers', lost.id), { recursive: true });
    expect((await t.run(['prune'])).code).toBe(0);
    expect(await env.snapshotter.exists(lostKey)).toBe(false);
    expect(await env.snapshotter.exists(kept.snapshotKey)).toBe(true);
    await kept.run(['true']);
    await kept.remove();
  });
});
