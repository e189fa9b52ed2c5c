import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainId } from '@tsbuild/oci';
import { Store } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs } from '../src/index.js';
// @ts-expect-error: a plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

/**
 * A COPY that starts a step is written as a layer straight from its sources (planCopyLayer);
 * its files are written into a snapshot only when a later step of the stage needs them, and
 * then as a written COPY leaves them, not as the layer carries them.
 */
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-copy-layer-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
const quiet = new Writable({ write: (_c, _e, cb) => cb() });

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
}, 60_000);
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function buildIt(files: Record<string, string>, extra: { sourceDateEpoch?: number } = {}) {
  const dir = await writeFiles(path.join(tmp, `ctx-${n++}`), files);
  // A sub-second mtime, older than SOURCE_DATE_EPOCH below: a layer keeps whole seconds only.
  await fsp.utimes(path.join(dir, 'data/f'), 1_000_000.123456, 1_000_000.123456);
  const r = await build({ store, snapshotter, context: dir, stdout: quiet, stderr: quiet, noCache: true, ...extra });
  const img = store.image(r.manifest);
  return { config: await img.config(), layers: await img.layers() };
}

async function layerText(layers: { uncompressed(): Promise<NodeJS.ReadableStream> }[], file: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await layers.at(-1)!.uncompressed()) chunks.push(Buffer.from(c as Buffer));
  const tar = Buffer.concat(chunks);
  for (let off = 0; off + 512 <= tar.length; ) {
    const name = tar.subarray(off, off + 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(tar.subarray(off + 124, off + 136).toString('ascii'), 8) || 0;
    if (name === file) return tar.subarray(off + 512, off + 512 + size).toString('utf8');
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${file} is not in the layer`);
}

describe('a COPY written as a layer from its sources', () => {
  it('leaves no snapshot of its files when no later step needs them', async () => {
    const { config } = await buildIt({ Dockerfile: 'FROM busybox\nCOPY data /data\n', 'data/f': 'x\n' });
    expect(await snapshotter.exists(chainId(config.rootfs.diff_ids)!)).toBe(false);
    expect(await snapshotter.exists(chainId(config.rootfs.diff_ids.slice(0, -1))!)).toBe(true);
  });

  it('gives a later RUN the files as the COPY writes them: mtimes to the nanosecond, not clamped to SOURCE_DATE_EPOCH', async () => {
    const { config, layers } = await buildIt(
      { Dockerfile: 'FROM busybox\nCOPY data /data\nRUN stat -c %y /data/f > /seen && cat /data/f >> /seen\n', 'data/f': 'x\n' },
      { sourceDateEpoch: 500_000 },
    );
    expect(config.rootfs.diff_ids).toHaveLength(3);
    expect(await layerText(layers, 'seen')).toBe('1970-01-12 13:46:40.123456000 +0000\nx\n');
  });
});
