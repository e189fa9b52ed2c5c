import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRegistry, freePort, startRegistry } from '../../registry-client/test/registry-server.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { TestStore } from './harness.js';

// The RUN appends a random UUID: run twice, it gives a different layer, so an equal image ID
// proves the step was taken from the cache, never run again.
const DOCKERFILE = 'FROM busybox\nENV E=1\nCOPY a.txt /a.txt\nRUN cat /proc/sys/kernel/random/uuid >> /stamp\nCOPY b.txt /b.txt\nRUN cat /stamp /a.txt /b.txt > /all\n';
const FILES = { Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'b.txt': 'b\n' };

/** A CI machine: a fresh store with the same busybox base (imported with a fixed timestamp, so the base's digest matches everywhere). */
async function machine(): Promise<TestStore> {
  const t = new TestStore();
  const rootfs = path.join(t.tmp, 'rootfs');
  makeBusyboxRootfs(rootfs);
  const r = await t.run(['import', '--timestamp', '0', rootfs, 'busybox']);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  return t;
}

/** Per STEP line of a build's output: whether it was taken from the cache. */
function cachedSteps(stdout: string): boolean[] {
  const lines = stdout.split('\n');
  return lines.flatMap((l, i) => (l.startsWith('STEP ') ? [lines[i + 1] === '--> Using cache'] : []));
}

describe('--cache-to / --cache-from: a build cache shared through a real registry', () => {
  let reg: RunningRegistry;
  let repo: string;
  const machines: TestStore[] = [];
  const newMachine = async () => {
    const m = await machine();
    machines.push(m);
    return m;
  };
  let imageA: string;
  let stampA: string;
  beforeAll(async () => {
    reg = await startRegistry();
    repo = `${reg.host}/team/app-cache`;
  });
  afterAll(async () => {
    await reg.stop();
    for (const m of machines) await m.cleanup();
  });

  it('machine B builds nothing that machine A pushed: every step after FROM is cached, same image ID', async () => {
    const a = await newMachine();
    const built = await a.run(['build', '--tls-verify=false', '--cache-to', repo, '-t', 'app', await a.context(FILES)]);
    expect(built.stderr).not.toMatch(/WARNING/);
    expect(built.code).toBe(0);
    expect(cachedSteps(built.stdout)).toEqual([false, false, false, false, false, false]);
    expect(built.stdout).toContain(`Pushed 5 cache entries to ${repo}`);
    imageA = built.stdout.trim().split('\n').at(-1)!;
    stampA = (await a.run(['run', 'app', 'cat', '/stamp'])).stdout;
    expect(stampA).toMatch(/^[0-9a-f-]{36}\n$/);

    const b = await newMachine();
    const baseA = JSON.parse((await a.run(['inspect', 'busybox'])).stdout).Digest;
    expect(JSON.parse((await b.run(['inspect', 'busybox'])).stdout).Digest).toBe(baseA);
    const fromCache = await b.run(['build', '--tls-verify=false', '--cache-from', repo, '-t', 'app', await b.context(FILES)]);
    expect(fromCache.stderr).not.toMatch(/WARNING/);
    expect(fromCache.code).toBe(0);
    expect(cachedSteps(fromCache.stdout)).toEqual([false, true, true, true, true, true]);
    expect(fromCache.stdout.trim().split('\n').at(-1)).toBe(imageA);
    // The RUN's output came from A's layer: the same UUID.
    expect((await b.run(['run', 'app', 'cat', '/stamp'])).stdout).toBe(stampA);

    // The entries went into B's local cache (a rebuild without --cache-from is cached too) and
    // named nothing: the store lists busybox and app only.
    const again = await b.run(['build', '-t', 'app', await b.context(FILES)]);
    expect(cachedSteps(again.stdout)).toEqual([false, true, true, true, true, true]);
    expect(again.stdout.trim().split('\n').at(-1)).toBe(imageA);
    const images = (await b.run(['images'])).stdout.trim().split('\n').slice(1);
    expect(images).toHaveLength(2);
  });

  it('a changed file misses that step and every later one, and the earlier steps still come from the registry', async () => {
    const c = await newMachine();
    const r = await c.run(['build', '--tls-verify=false', '--cache-from', repo, '--cache-to', repo, await c.context({ ...FILES, 'b.txt': 'B\n' })]);
    expect(r.stderr).not.toMatch(/WARNING/);
    expect(r.code).toBe(0);
    expect(cachedSteps(r.stdout)).toEqual([false, true, true, true, false, false]);
    expect(r.stdout.trim().split('\n').at(-1)).not.toBe(imageA);
    // Only the two new states are pushed back: the three taken from this repository are there.
    expect(r.stdout).toContain(`Pushed 2 cache entries to ${repo}`);
    const tags = (await (await fetch(`${reg.url}/v2/team/app-cache/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toHaveLength(7);
    for (const t of tags.tags) expect(t).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a --cache-from repository without the tags builds everything, silently', async () => {
    const d = await newMachine();
    const r = await d.run(['build', '--tls-verify=false', '--cache-from', `${reg.host}/team/empty`, await d.context(FILES)]);
    expect(r.stderr).not.toMatch(/WARNING/);
    expect(r.code).toBe(0);
    expect(cachedSteps(r.stdout)).toEqual([false, false, false, false, false, false]);
    expect(r.stdout.trim().split('\n').at(-1)).not.toBe(imageA);
  });

  it('an unreachable --cache-from registry is one warning, and the build goes on', async () => {
    const e = await newMachine();
    const dead = `127.0.0.1:${await freePort()}/team/app-cache`;
    const r = await e.run(['build', '--tls-verify=false', '--cache-from', dead, '--cache-from', repo, await e.context(FILES)]);
    expect(r.code).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('WARNING:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`--cache-from ${dead}:`);
    // The next repository in the list still serves every step.
    expect(cachedSteps(r.stdout)).toEqual([false, true, true, true, true, true]);
    expect(r.stdout.trim().split('\n').at(-1)).toBe(imageA);
    // --cache-to that fails is an error, but the image is built and kept.
    const push = await e.run(['build', '-q', '--tls-verify=false', '-t', 'kept', '--cache-to', dead, await e.context(FILES)]);
    expect(push.code).toBe(1);
    expect(push.stderr.trim()).toMatch(new RegExp(`^Error: image [0-9a-f]{12} was built, but pushing its cache to ${dead} failed: .*ECONNREFUSED`));
    expect(JSON.parse((await e.run(['inspect', 'kept'])).stdout).Id).toBe(`sha256:${imageA}`);
  }, 30_000);

  it('refuses a cache reference with a tag, before building', async () => {
    const f = await newMachine();
    const r = await f.run(['build', '--tls-verify=false', '--cache-to', `${repo}:v1`, await f.context(FILES)]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/--cache-to .*:v1: want a repository without tag or digest/);
    expect(r.stdout).not.toContain('STEP');
  });
});
