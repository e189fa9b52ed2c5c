import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Descriptor, type Digest, type ImageConfig, type ImageManifest, MediaType, hostPlatform } from '@tsbuild/oci';
import { Store, ingestLayer, saveArchive } from '@tsbuild/store';
import { OverlaySnapshotter, tarDirectory } from '@tsbuild/snapshotter';
import { build } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

const LAYERS = 200;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-deep-'));
let store: Store;
let snapshotter: OverlaySnapshotter;

/**
 * An image of 200 layers: busybox, then 199 layers that each add /layers/NNN. Its lowerdir list
 * with absolute paths is far over the one page of mount data the kernel accepts.
 */
beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  const dirs = [makeBusyboxRootfs(path.join(tmp, 'layer-000'))];
  for (let i = 1; i < LAYERS; i++) {
    const d = path.join(tmp, `layer-${String(i).padStart(3, '0')}`);
    await fsp.mkdir(path.join(d, 'layers'), { recursive: true });
    await fsp.writeFile(path.join(d, 'layers', String(i).padStart(3, '0')), `layer ${i}\n`);
    dirs.push(d);
  }
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  for (const d of dirs) {
    const l = await ingestLayer(store.content, tarDirectory(d), { compression: 'gzip' });
    layers.push({ mediaType: MediaType.OciLayerGzip, digest: l.digest, size: l.size });
    diffIds.push(l.diffID);
  }
  const p = hostPlatform();
  const config: ImageConfig = { architecture: p.architecture, os: p.os, config: {}, rootfs: { type: 'layers', diff_ids: diffIds } };
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: await store.putJSON(config, MediaType.OciConfig), layers };
  await store.setName('deep', await store.putJSON(manifest, MediaType.OciManifest));
}, 300_000);
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

describe('an image of 200 layers', () => {
  it('unpacks, mounts for RUN and builds on', async () => {
    const ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(ctx);
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), 'FROM deep\nRUN ls /layers | wc -l > /count && cat /layers/001 /layers/199 > /ends\nCOPY Dockerfile /copied\n');
    const r = await build({ store, snapshotter, context: ctx, tags: ['deeper'] });
    const config = await store.image(r.manifest).config();
    expect(config.rootfs.diff_ids).toHaveLength(LAYERS + 2);
    // read the result back through skopeo + umoci: 202 layers applied in order
    await saveArchive(store, [{ name: 'docker.io/library/deeper:latest', descriptor: r.manifest }], path.join(tmp, 'deeper.tar'), 'oci-archive');
    execFileSync('skopeo', ['copy', '-q', `oci-archive:${path.join(tmp, 'deeper.tar')}`, `oci:${path.join(tmp, 'oci')}:x`]);
    execFileSync('umoci', ['unpack', '--image', `${path.join(tmp, 'oci')}:x`, path.join(tmp, 'bundle')]);
    const root = path.join(tmp, 'bundle', 'rootfs');
    expect((await fsp.readFile(path.join(root, 'count'), 'utf8')).trim()).toBe(String(LAYERS - 1));
    expect(await fsp.readFile(path.join(root, 'ends'), 'utf8')).toBe('layer 1\nlayer 199\n');
    expect(await fsp.readFile(path.join(root, 'copied'), 'utf8')).toContain('FROM deep');
  }, 300_000);
});
