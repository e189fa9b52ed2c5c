import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store, emptyManifestList, withEntry, writeManifestList } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs, prune, type BuildEvent, type BuildOptions } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-cache-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

function context(name: string, files: Record<string, string>): Promise<string> {
  return writeFiles(path.join(tmp, name), files);
}

async function buildIt(ctx: string, extra: Partial<BuildOptions> = {}) {
  const steps: { text: string; cached: boolean }[] = [];
  const r = await build({
    store,
    snapshotter,
    context: ctx,
    stdout: quiet(),
    stderr: quiet(),
    onEvent: (e: BuildEvent) => {
      if (e.type === 'step') steps.push({ text: e.text, cached: e.cached });
    },
    ...extra,
  });
  return { ...r, steps };
}

const DOCKERFILE = 'FROM busybox\nARG V=1\nENV E=e\nCOPY a.txt /a.txt\nRUN echo "$V $(date +%N)" > /run.txt\nCOPY b.txt /b.txt\nCMD ["cat", "/run.txt"]\n';

describe('the build cache', () => {
  it('a rebuild with nothing changed runs nothing and gives the same image ID', async () => {
    const ctx = await context('same', { Dockerfile: DOCKERFILE, 'a.txt': 'a', 'b.txt': 'b' });
    const first = await buildIt(ctx);
    expect(first.steps.filter((s) => s.cached)).toEqual([]);
    const second = await buildIt(ctx);
    expect(second.steps.slice(1).every((s) => s.cached)).toBe(true);
    expect(second.imageId).toBe(first.imageId);
  });

  it('changing one copied file rebuilds that step and the later ones only', async () => {
    const ctx = await context('onefile', { Dockerfile: DOCKERFILE, 'a.txt': 'a', 'b.txt': 'b' });
    const first = await buildIt(ctx);
    await fsp.writeFile(path.join(ctx, 'b.txt'), 'B');
    const second = await buildIt(ctx);
    expect(second.steps.map((s) => s.cached)).toEqual([false, true, true, true, true, false, false]);
    expect(second.imageId).not.toBe(first.imageId);
    await fsp.writeFile(path.join(ctx, 'a.txt'), 'A');
    const third = await buildIt(ctx);
    expect(third.steps.map((s) => s.cached)).toEqual([false, true, true, false, false, false, false]);
  });

  it('mtimes and ignored files do not invalidate; a changed build arg does', async () => {
    const ctx = await context('mtime', { Dockerfile: DOCKERFILE, 'a.txt': 'a', 'b.txt': 'b', '.dockerignore': 'junk\n', junk: '1' });
    await buildIt(ctx);
    await fsp.utimes(path.join(ctx, 'a.txt'), new Date(0), new Date(0));
    await fsp.writeFile(path.join(ctx, 'junk'), '2');
    expect((await buildIt(ctx)).steps.slice(1).every((s) => s.cached)).toBe(true);
    const withArg = await buildIt(ctx, { buildArgs: { V: '2' } });
    // ARG and ENV are cached metadata, but every step after the changed ARG gets a new key
    expect(withArg.steps.map((s) => s.cached)).toEqual([false, false, false, false, false, false, false]);
  });

  it('a mode change of a copied file invalidates', async () => {
    const ctx = await context('mode', { Dockerfile: 'FROM busybox\nCOPY x /x\n', x: 'x' });
    await buildIt(ctx);
    await fsp.chmod(path.join(ctx, 'x'), 0o700);
    expect((await buildIt(ctx)).steps.map((s) => s.cached)).toEqual([false, false]);
  });

  it('--no-cache runs every step', async () => {
    const ctx = await context('nocache', { Dockerfile: DOCKERFILE, 'a.txt': 'a', 'b.txt': 'b' });
    const first = await buildIt(ctx);
    const second = await buildIt(ctx, { noCache: true });
    expect(second.steps.every((s) => !s.cached)).toBe(true);
    expect(second.imageId).not.toBe(first.imageId);
  });

  it('the cache survives prune of untagged images and rebuilds the snapshots it needs', async () => {
    const ctx = await context('pruned', { Dockerfile: 'FROM busybox\nRUN echo one > /one\nRUN cat /one > /two\n' });
    const first = await buildIt(ctx, { tags: ['pruned'] });
    await store.removeImage(first.manifest.digest);
    await prune(store, snapshotter);
    // the cached layers are still there: the rebuild is fully cached and gives the same image
    const second = await buildIt(ctx, { tags: ['pruned'] });
    expect(second.steps.slice(1).every((s) => s.cached)).toBe(true);
    expect(second.imageId).toBe(first.imageId);
    // and a new step on top needs the cached filesystem, unpacked again from the blobs
    await fsp.appendFile(path.join(ctx, 'Dockerfile'), 'RUN cat /two > /three\n');
    const third = await buildIt(ctx);
    expect(third.steps.map((s) => s.cached)).toEqual([false, true, true, false]);
  });

  it('prune keeps an untagged image that a named manifest list holds, and removes one no list holds', async () => {
    const ctx = await context('listed', { Dockerfile: 'FROM busybox\nRUN echo listed > /l\n' });
    const held = await buildIt(ctx);
    const loose = await buildIt(await context('loose', { Dockerfile: 'FROM busybox\nRUN echo loose > /l\n' }));
    await store.addImage(held.manifest);
    await store.addImage(loose.manifest);
    await writeManifestList(store, 'the-list', withEntry(emptyManifestList(), held.manifest));
    const r = await prune(store, snapshotter);
    expect(r.images).toContain(loose.manifest.digest);
    expect(r.images).not.toContain(held.manifest.digest);
    expect((await store.listImages()).map((i) => i.descriptor.digest)).toContain(held.manifest.digest);
  });
});

describe('--layers=false and --squash', () => {
  it('--layers=false makes one layer for the stage, with a history entry per step', async () => {
    const ctx = await context('nolayers', { Dockerfile: 'FROM busybox\nRUN echo 1 > /1\nENV X=1\nRUN echo 2 > /2\nCOPY f /f\n', f: 'f' });
    const r = await buildIt(ctx, { layers: false });
    const config = await store.image(r.manifest).config();
    expect(config.rootfs.diff_ids).toHaveLength(2);
    const h = config.history!;
    expect(h.filter((e) => !e.empty_layer)).toHaveLength(2);
    expect(h.at(-1)!.empty_layer).toBeUndefined();
    expect(h.at(-1)!.created_by).toBe('/bin/sh -c #(nop) COPY f /f');
  });

  it('--squash squashes the final stage only and keeps the base layers', async () => {
    const ctx = await context('squash', { Dockerfile: 'FROM busybox AS b\nRUN echo 1 > /1\nFROM b\nRUN echo 2 > /2\nRUN echo 3 > /3\n' });
    const r = await buildIt(ctx, { squash: true });
    expect((await store.image(r.manifest).config()).rootfs.diff_ids).toHaveLength(3);
  });
});

describe('image format and metadata flags', () => {
  it('--format docker writes a Docker schema 2 manifest; labels and annotations land', async () => {
    const ctx = await context('docker', { Dockerfile: 'FROM busybox\nLABEL a=1\nRUN true\n' });
    const r = await buildIt(ctx, { format: 'docker', labels: { b: '2' } });
    expect(r.manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    const m = await store.image(r.manifest).manifest();
    expect(m.config.mediaType).toBe('application/vnd.docker.container.image.v1+json');
    // Docker's layer types only: the imported base and the build's own layer, plain tars (stored uncompressed by default).
    expect(m.layers.map((l) => l.mediaType)).toEqual(['application/vnd.docker.image.rootfs.diff.tar', 'application/vnd.docker.image.rootfs.diff.tar']);
    expect((await store.image(r.manifest).config()).config?.Labels).toEqual({ a: '1', b: '2' });
    const o = await buildIt(ctx, { annotations: { 'org.opencontainers.image.source': 'x' } });
    expect((await store.image(o.manifest).manifest()).annotations).toEqual({ 'org.opencontainers.image.source': 'x' });
  });

  it('FROM --platform takes that platform\'s image (busybox here is this machine\'s only); TARGETARCH is predefined for FROM', async () => {
    const ctx = await context('platform', { Dockerfile: 'FROM --platform=linux/s390x busybox\n' });
    await expect(buildIt(ctx, { pull: 'never' })).rejects.toThrow(/^Dockerfile:1: FROM busybox: the local busybox is a linux\/amd64 image, not linux\/s390x \(and --pull=never\)$/);
    const bad = await context('platform-bad', { Dockerfile: 'FROM --platform=linux busybox\n' });
    await expect(buildIt(bad)).rejects.toThrow(/^Dockerfile:1:\d+: FROM --platform=linux: invalid platform "linux": want os\/arch\[\/variant\]$/);
    const ok = await context('platform-ok', { Dockerfile: 'FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nRUN echo $TARGETARCH > /arch\n' });
    await expect(buildIt(ok)).resolves.toBeTruthy();
  });
});
