import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Descriptor, type ImageConfig, type Platform, formatPlatform, hostPlatform, isIndexMediaType, parsePlatform } from '@tsbuild/oci';
import { Store, emptyManifestList, readManifestList, withEntry, writeImage, writeManifestList } from '@tsbuild/store';
import { OverlaySnapshotter, MergedView } from '@tsbuild/snapshotter';
import { imageSnapshot } from '@tsbuild/container';
import { type BuildEvent, allPlatforms, build, buildPlatforms, importRootfs } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

/**
 * Builds for several platforms into a manifest list (issue 18). The bases: busybox for this
 * machine and a fake linux/arm64 busybox (the same files, its config saying arm64/v8), combined
 * into the list `localhost/busybox-multi` through writeManifestList. No RUN runs in an arm64
 * stage: that needs the emulation (packages/runtime/src/emulation.ts).
 */
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-multi-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });
const AMD64 = parsePlatform('linux/amd64');
const ARM64 = parsePlatform('linux/arm64');

/** An image of `platform` with busybox's layers, named `name`. */
async function fakeBusybox(name: string, platform: Platform): Promise<Descriptor> {
  const { descriptor } = await store.resolve('busybox');
  const img = store.image(descriptor);
  const [config, manifest] = await Promise.all([img.config(), img.manifest()]);
  const c: ImageConfig = { ...structuredClone(config), os: platform.os, architecture: platform.architecture };
  if (platform.variant) c.variant = platform.variant;
  else delete c.variant;
  const w = await writeImage(store, c, manifest.layers, { format: 'oci' });
  await store.setName(name, w.descriptor);
  return w.descriptor;
}

async function list(name: string, entries: { d: Descriptor; p: Platform }[]): Promise<void> {
  let l = emptyManifestList('oci');
  for (const { d, p } of entries) l = withEntry(l, { mediaType: d.mediaType, digest: d.digest, size: d.size, platform: p });
  await writeManifestList(store, name, l);
}

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  expect(formatPlatform(hostPlatform())).toBe('linux/amd64');
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  const amd = (await store.resolve('busybox')).descriptor;
  await store.setName('busybox-amd64', amd);
  const arm = await fakeBusybox('busybox-arm64', ARM64);
  const s390 = await fakeBusybox('busybox-s390x', parsePlatform('linux/s390x'));
  await list('localhost/busybox-multi', [{ d: amd, p: AMD64 }, { d: arm, p: ARM64 }]);
  await list('localhost/amd-s390x', [{ d: amd, p: AMD64 }, { d: s390, p: parsePlatform('linux/s390x') }]);
}, 60_000);
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

let n = 0;
async function run(files: Record<string, string>, opts: { platforms?: Platform[]; manifest?: string; tags?: string[]; jobs?: number } = {}) {
  const ctx = await writeFiles(path.join(tmp, `ctx-${n++}`), files);
  const events: { e: BuildEvent; p: string }[] = [];
  const r = await buildPlatforms({
    store,
    snapshotter,
    context: ctx,
    platforms: opts.platforms ?? [AMD64, ARM64],
    ...(opts.manifest ? { manifest: opts.manifest } : {}),
    ...(opts.tags ? { tags: opts.tags } : {}),
    ...(opts.jobs ? { jobs: opts.jobs } : {}),
    stdout: quiet(),
    stderr: quiet(),
    onEvent: (e, p) => events.push({ e, p: formatPlatform(p) }),
  });
  return { ...r, events, ctx };
}

async function configOf(d: Descriptor): Promise<ImageConfig> {
  return store.image(d).config();
}

async function fileIn(d: Descriptor, file: string): Promise<string> {
  const img = store.image(d);
  const [config, manifest] = await Promise.all([img.config(), img.manifest()]);
  const { ImageState } = await import('@tsbuild/container');
  const view = await MergedView.open(snapshotter, await imageSnapshot({ store, snapshotter }, ImageState.from(config, manifest.layers)));
  const out = path.join(tmp, `read-${n++}`);
  await view.materialize(file, out, true);
  return fsp.readFile(out, 'utf8');
}

describe('build for several platforms', () => {
  it('a COPY/config-only Dockerfile gives one image per platform, with its os/architecture, and a list naming both', async () => {
    const r = await run({ Dockerfile: 'FROM localhost/busybox-multi\nCOPY a.txt /a.txt\nENV X=1\n', 'a.txt': 'a\n' }, { manifest: 'localhost/app-list' });
    const { descriptor, list: l } = await readManifestList(store, 'localhost/app-list');
    expect(descriptor.digest).toBe(r.list.digest);
    expect(l.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(l.manifests.map((m) => formatPlatform(m.platform!))).toEqual(['linux/amd64', 'linux/arm64/v8']);
    const configs = await Promise.all(l.manifests.map(configOf));
    expect(configs.map((c) => [c.os, c.architecture, c.variant])).toEqual([
      ['linux', 'amd64', undefined],
      ['linux', 'arm64', 'v8'],
    ]);
    // Each on its own platform's base: the arm64 image's config is not the amd64 one's.
    expect(configs[0]!.config?.Env).toContain('X=1');
    expect(l.manifests[0]!.digest).not.toBe(l.manifests[1]!.digest);
    expect(await fileIn(l.manifests[1]!, '/a.txt')).toBe('a\n');
    // The images are kept by the list, not listed as untagged images of their own.
    const records = await store.listImages();
    expect(records.some((x) => l.manifests.some((m) => m.digest === x.descriptor.digest))).toBe(false);
  });

  it('gives the automatic platform ARGs docker\'s values, in FROM lines without declaration and in a stage after ARG NAME', async () => {
    const r = await run({
      Dockerfile:
        'FROM busybox-$TARGETARCH\n' +
        'LABEL before=x$TARGETARCH\n' +
        'ARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\nARG BUILDPLATFORM\nARG BUILDOS\nARG BUILDARCH\nARG BUILDVARIANT\n' +
        'LABEL tp=$TARGETPLATFORM tos=$TARGETOS tarch=$TARGETARCH tv=x$TARGETVARIANT bp=$BUILDPLATFORM bos=$BUILDOS barch=$BUILDARCH bv=x$BUILDVARIANT\n',
    });
    const labels = await Promise.all(r.images.map(async (i) => (await configOf(i.result.manifest)).config?.Labels));
    // Undeclared in the stage, the ARG is not there (docker's scoping): `before` is just x.
    expect(labels[0]).toEqual({ before: 'x', tp: 'linux/amd64', tos: 'linux', tarch: 'amd64', tv: 'x', bp: 'linux/amd64', bos: 'linux', barch: 'amd64', bv: 'x' });
    // BuildKit's arm64 leaves its default variant out of TARGETPLATFORM and TARGETVARIANT.
    expect(labels[1]).toEqual({ before: 'x', tp: 'linux/arm64', tos: 'linux', tarch: 'arm64', tv: 'x', bp: 'linux/amd64', bos: 'linux', barch: 'amd64', bv: 'x' });
    // FROM busybox-$TARGETARCH took each platform's own image.
    expect((await configOf(r.images[1]!.result.manifest)).architecture).toBe('arm64');
  });

  it('runs a FROM --platform=$BUILDPLATFORM stage natively, once for both targets, and COPY --from takes its output into each image', async () => {
    const r = await run({
      Dockerfile:
        'FROM --platform=$BUILDPLATFORM localhost/busybox-multi AS build\n' +
        'RUN uname -m > /arch && date +%N > /stamp\n' +
        'FROM localhost/busybox-multi\n' +
        'COPY --from=build /arch /stamp /out/\n',
    });
    const archs = await Promise.all(r.images.map((i) => fileIn(i.result.manifest, '/out/arch')));
    expect(archs).toEqual(['x86_64\n', 'x86_64\n']);
    const stamps = await Promise.all(r.images.map((i) => fileIn(i.result.manifest, '/out/stamp')));
    expect(stamps[0]).toBe(stamps[1]);
    const runs = r.events.filter(({ e }) => e.type === 'step' && e.text.startsWith('RUN'));
    expect(runs.map(({ e }) => (e as { cached: boolean }).cached).sort()).toEqual([false, true]);
    expect((await configOf(r.images[1]!.result.manifest)).architecture).toBe('arm64');
  });

  it('keys the cache by platform: the same FROM scratch step for another platform is not a hit', async () => {
    const files = { Dockerfile: 'FROM scratch\nCOPY a.txt /a.txt\n', 'a.txt': 'same\n' };
    const first = await run(files, { platforms: [AMD64] , manifest: 'localhost/scratch-list' });
    expect(first.events.filter(({ e }) => e.type === 'step' && e.cached)).toEqual([]);
    const second = await run(files, { platforms: [ARM64], manifest: 'localhost/scratch-list' });
    expect(second.events.filter(({ e }) => e.type === 'step' && e.cached)).toEqual([]);
    expect((await configOf(second.images[0]!.result.manifest)).architecture).toBe('arm64');
    // Amended, not replaced: the list has both platforms now; a rebuild of both is all cache.
    const { list: l } = await readManifestList(store, 'localhost/scratch-list');
    expect(l.manifests.map((m) => formatPlatform(m.platform!))).toEqual(['linux/amd64', 'linux/arm64/v8']);
    const third = await run(files, { manifest: 'localhost/scratch-list' });
    expect(third.events.filter(({ e }) => e.type === 'step' && e.text.startsWith('COPY')).every(({ e }) => (e as { cached: boolean }).cached)).toBe(true);
    expect((await readManifestList(store, 'localhost/scratch-list')).list.manifests).toHaveLength(2);
  });

  it('replaces a platform\'s previous entry when the list is built again with changed content', async () => {
    const files = { Dockerfile: 'FROM localhost/busybox-multi\nCOPY a.txt /a.txt\n', 'a.txt': 'one\n' };
    const first = await run(files, { tags: ['localhost/replace'] });
    const ctx = first.ctx;
    await fsp.writeFile(path.join(ctx, 'a.txt'), 'two\n');
    const second = await buildPlatforms({ store, snapshotter, context: ctx, platforms: [ARM64], manifest: 'localhost/replace', stdout: quiet(), stderr: quiet() });
    const { list: l } = await readManifestList(store, 'localhost/replace');
    expect(l.manifests).toHaveLength(2);
    expect(l.manifests[0]!.digest).toBe(first.images[0]!.result.manifest.digest);
    expect(l.manifests[1]!.digest).toBe(second.images[0]!.result.manifest.digest);
    expect(await fileIn(l.manifests[1]!, '/a.txt')).toBe('two\n');
  });

  it('-t with several platforms names the list', async () => {
    const r = await run({ Dockerfile: 'FROM localhost/busybox-multi\nLABEL a=b\n' }, { tags: ['localhost/tagged:1', 'localhost/tagged:2'] });
    expect(r.names).toEqual(['localhost/tagged:1', 'localhost/tagged:2']);
    for (const t of r.names) {
      const { descriptor } = await store.resolve(t);
      expect(isIndexMediaType(descriptor.mediaType)).toBe(true);
      expect(descriptor.digest).toBe(r.list.digest);
    }
  });

  it('--jobs 1 builds one platform at a time', async () => {
    const r = await run({ Dockerfile: 'FROM localhost/busybox-multi\nCOPY a.txt /a\nCOPY a.txt /b\nLABEL x=y\n', 'a.txt': 'j\n' }, { jobs: 1 });
    const order = r.events.filter(({ e }) => e.type === 'step').map(({ p }) => p);
    expect(order).toEqual([...Array(4).fill('linux/amd64'), ...Array(4).fill('linux/arm64/v8')]);
    // Without --jobs both start at once: the second platform's first step comes before the first's last.
    const both = await run({ Dockerfile: 'FROM localhost/busybox-multi\nCOPY a.txt /c\nCOPY a.txt /d\nLABEL x=z\n', 'a.txt': 'k\n' });
    const o2 = both.events.filter(({ e }) => e.type === 'step').map(({ p }) => p);
    expect(o2.indexOf('linux/arm64/v8')).toBeLessThan(o2.lastIndexOf('linux/amd64'));
  });

  it('a platform that fails fails the build and names nothing', async () => {
    await expect(
      run({ Dockerfile: 'FROM busybox-$TARGETARCH\nLABEL a=b\n' }, { platforms: [AMD64, parsePlatform('linux/ppc64le')], manifest: 'localhost/failed' }),
    ).rejects.toThrow(/^Dockerfile:1: .*busybox-ppc64le/);
    await expect(store.resolve('localhost/failed')).rejects.toThrow(/image not known/);
  });

  it('a list without the platform is one line naming what it has', async () => {
    await expect(run({ Dockerfile: 'FROM localhost/busybox-multi\n' }, { platforms: [parsePlatform('linux/s390x')] })).rejects.toThrow(
      'Dockerfile:1: FROM localhost/busybox-multi: manifest list localhost/busybox-multi has no image for platform linux/s390x (it has linux/amd64, linux/arm64/v8)',
    );
  });

  it('--all-platforms: the platforms the bases\' lists have in common', async () => {
    const ctx = await writeFiles(path.join(tmp, 'all'), { Dockerfile: 'FROM localhost/busybox-multi AS a\nFROM localhost/amd-s390x\nCOPY --from=a /bin/busybox /b\n' });
    expect((await allPlatforms({ store, snapshotter, context: ctx })).map(formatPlatform)).toEqual(['linux/amd64']);
    const one = await writeFiles(path.join(tmp, 'all-one'), { Dockerfile: 'FROM busybox AS a\nFROM localhost/busybox-multi\n' });
    expect((await allPlatforms({ store, snapshotter, context: one })).map(formatPlatform)).toEqual(['linux/amd64', 'linux/arm64/v8']);
    const none = await writeFiles(path.join(tmp, 'all-none'), { Dockerfile: 'FROM busybox\n' });
    await expect(allPlatforms({ store, snapshotter, context: none })).rejects.toThrow('--all-platforms: no base image of Dockerfile is a manifest list');
  });

  it('a single-platform build for another platform takes the list\'s image and says that platform in its config', async () => {
    const ctx = await writeFiles(path.join(tmp, 'single'), { Dockerfile: 'FROM localhost/busybox-multi\nLABEL one=1\n' });
    const r = await build({ store, snapshotter, context: ctx, platform: ARM64, tags: ['localhost/single-arm'], stdout: quiet(), stderr: quiet() });
    expect((await configOf(r.manifest)).architecture).toBe('arm64');
    expect(isIndexMediaType((await store.resolve('localhost/single-arm')).descriptor.mediaType)).toBe(false);
  });

  it('FROM --platform naming another platform than a local single image\'s, with --pull=never, is one line naming both', async () => {
    const ctx = await writeFiles(path.join(tmp, 'never'), { Dockerfile: 'FROM --platform=linux/s390x busybox\n' });
    await expect(build({ store, snapshotter, context: ctx, pull: 'never', stdout: quiet(), stderr: quiet() })).rejects.toThrow(
      'Dockerfile:1: FROM busybox: the local busybox is a linux/amd64 image, not linux/s390x (and --pull=never)',
    );
  });
});
