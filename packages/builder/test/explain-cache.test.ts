import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs, prune, type BuildEvent, type BuildOptions } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-explain-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

type CacheEvent = Extract<BuildEvent, { type: 'cache' }>;

/** The build's cache events, each with the text of its step. */
async function explain(ctx: string, extra: Partial<BuildOptions> = {}): Promise<(CacheEvent & { text: string })[]> {
  const text = new Map<number, string>();
  const out: (CacheEvent & { text: string })[] = [];
  await build({
    store,
    snapshotter,
    context: ctx,
    stdout: quiet(),
    stderr: quiet(),
    onEvent: (e) => {
      if (e.type === 'step') text.set(e.step, e.text);
      if (e.type === 'cache') out.push({ ...e, text: text.get(e.step)! });
    },
    ...extra,
  });
  return out;
}

const DOCKERFILE = 'FROM busybox\nARG V=1\nENV E=e\nCOPY src/ /app/\nRUN echo "$V" > /v.txt\nCMD ["cat", "/v.txt"]\n';

describe('--explain-cache: why each step missed, or which entry it hit', () => {
  let ctx: string;
  it('a first build: every step misses with no entry', async () => {
    ctx = await writeFiles(path.join(tmp, 'app'), { Dockerfile: DOCKERFILE, 'src/main.ts': 'one', 'src/util.ts': 'u' });
    const ev = await explain(ctx);
    expect(ev.map((e) => e.text)).toEqual(['ARG V=1', 'ENV E=e', 'COPY src/ /app/', 'RUN echo "$V" > /v.txt', 'CMD ["cat", "/v.txt"]']);
    for (const e of ev) expect(e).toMatchObject({ hit: false, reason: 'no entry (first build)' });
  });

  it('a rebuild hits every step, naming the local entry', async () => {
    const ev = await explain(ctx);
    for (const e of ev) {
      expect(e.hit).toBe(true);
      expect(e.source).toBe('local');
      expect(e.reason).toMatch(/^entry [0-9a-f]{12} \(local\)$/);
    }
  });

  it('a changed file: that COPY names the file and both digests, the later steps the parent', async () => {
    await fsp.writeFile(path.join(ctx, 'src/main.ts'), 'two');
    const ev = await explain(ctx);
    expect(ev.slice(0, 2).every((e) => e.hit)).toBe(true);
    const copy = ev[2]!;
    expect(copy.hit).toBe(false);
    expect(copy.reason).toMatch(/^src\/main\.ts content changed \(was [0-9a-f]{8}…, now [0-9a-f]{8}…\)$/);
    expect(ev[3]).toMatchObject({ hit: false, reason: `parent changed at step ${copy.step}` });
    expect(ev[4]).toMatchObject({ hit: false, reason: `parent changed at step ${copy.step}` });
  });

  it('an added file is named', async () => {
    await fsp.writeFile(path.join(ctx, 'src/new.ts'), 'n');
    const ev = await explain(ctx);
    expect(ev[2]).toMatchObject({ hit: false, reason: 'src/new.ts added' });
  });

  it('a build arg value: the first step with it in scope names the ARG and both values', async () => {
    const ev = await explain(ctx, { buildArgs: { V: '2' } });
    expect(ev[0]).toMatchObject({ text: 'ARG V=1', hit: false, reason: 'ARG V changed (1 → 2)' });
    expect(ev[1]!.reason).toBe(`parent changed at step ${ev[0]!.step}`);
  });

  it('a changed instruction: the text changed, the next step names it as the parent', async () => {
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), DOCKERFILE.replace('ENV E=e', 'ENV E=f'));
    const ev = await explain(ctx);
    expect(ev[0]!.hit).toBe(true);
    expect(ev[1]).toMatchObject({ text: 'ENV E=f', hit: false, reason: 'instruction text changed (was: ENV E=e)' });
    expect(ev[2]).toMatchObject({ hit: false, reason: `parent changed at step ${ev[1]!.step}` });
  });

  it('a changed base image: the first step names the FROM as the parent that changed', async () => {
    await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs2')), 'busybox', { sourceDateEpoch: 12345 });
    const ev = await explain(ctx);
    expect(ev[0]).toMatchObject({ hit: false, reason: `parent changed at step ${ev[0]!.step - 1}` });
  });

  it('--no-cache: every step says so', async () => {
    const ev = await explain(ctx, { noCache: true });
    expect(ev).toHaveLength(5);
    for (const e of ev) expect(e).toMatchObject({ hit: false, reason: '--no-cache' });
  });

  it('prune --build-cache drops the records with the entries: the next build is a first build again', async () => {
    const entries = await fsp.readdir(path.join(store.root, 'cache', 'inputs'));
    expect(entries.length).toBeGreaterThan(0);
    const r = await prune(store, snapshotter, { buildCache: true, keepUntagged: true });
    expect(r.cacheEntries).toBeGreaterThan(0);
    await expect(fsp.stat(path.join(store.root, 'cache', 'inputs'))).rejects.toThrow(/ENOENT/);
    const ev = await explain(ctx);
    for (const e of ev) expect(e).toMatchObject({ hit: false, reason: 'no entry (first build)' });
  });

  it('the records hold the copied files and arg values, compactly, and nothing of a secret', async () => {
    const secretFile = path.join(tmp, 'secret');
    await fsp.writeFile(secretFile, 'TOPSECRET-7f3a');
    const c = await writeFiles(path.join(tmp, 'secret-ctx'), { Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null\n' });
    await explain(c, { secrets: { s: { src: secretFile } } });
    const { gunzipSync } = await import('node:zlib');
    const dir = path.join(store.root, 'cache');
    for (const sub of ['inputs', 'steps']) {
      for (const f of await fsp.readdir(path.join(dir, sub))) {
        const raw = await fsp.readFile(path.join(dir, sub, f));
        const text = sub === 'inputs' ? gunzipSync(raw).toString() : raw.toString();
        expect(text).not.toContain('TOPSECRET');
      }
    }
  });
});
