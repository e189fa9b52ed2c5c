import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainIds, type Digest } from '@tsbuild/oci';
import { OverlaySnapshotter, unpack } from '../src/index.js';
import { encodeHeader, END_OF_ARCHIVE, padding } from '../src/tar-format.js';
import { mountAll } from './helpers.js';

let tmp: string;
let undo: (() => void)[] = [];
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'tsbuild-deep-'));
  undo = [];
});
afterEach(async () => {
  for (const u of undo.reverse()) u();
  await rm(tmp, { recursive: true, force: true });
});

/** Layer i adds files/f<i> and rewrites top (so the merged tree must show the last one). */
function layerTar(i: number): Buffer {
  const parts: Buffer[] = [];
  const file = (name: string, text: string) => {
    const body = Buffer.from(text);
    parts.push(encodeHeader({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 1_700_000_000, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map() }));
    parts.push(body, Buffer.alloc(padding(body.length)));
  };
  parts.push(encodeHeader({ name: 'files/', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map() }));
  file(`files/f${i}`, `layer ${i}`);
  file('top', `layer ${i}`);
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

describe('deep chains', () => {
  it('unpacks a 200-layer image; a snapshot prepared on top mounts (over one page of lowerdirs) and shows every layer', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    const tars = Array.from({ length: 200 }, (_, i) => layerTar(i));
    const top = await unpack(s, tars.map((t) => ({ diffID: sha(t), open: async () => Readable.from([t]) })));
    expect(top).toBe(chainIds(tars.map(sha)).at(-1));

    const [m] = await s.prepare('work', top);
    const lower = m!.options.find((o) => o.startsWith('lowerdir='))!;
    expect(lower.split(':')).toHaveLength(200);
    expect(Buffer.byteLength(m!.options.join(','))).toBeGreaterThan(4096); // too long to pass as is
    const merged = join(tmp, 'merged');
    await mkdir(merged);
    undo.push(mountAll([m!], merged));

    const names = await readdir(join(merged, 'files'));
    expect(names.sort()).toEqual(Array.from({ length: 200 }, (_, i) => `f${i}`).sort());
    expect(await readFile(join(merged, 'files/f0'), 'utf8')).toBe('layer 0');
    expect(await readFile(join(merged, 'files/f137'), 'utf8')).toBe('layer 137');
    expect(await readFile(join(merged, 'top'), 'utf8')).toBe('layer 199'); // the nearest layer wins
    await writeFile(join(merged, 'files/new'), 'new');
    expect(await readFile(join(await s.fsDir('work'), 'files/new'), 'utf8')).toBe('new');
  });

  it('prepare and mount on a 100-layer chain takes under 50 ms (median of 5)', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    const tars = Array.from({ length: 100 }, (_, i) => layerTar(i));
    const top = (await unpack(s, tars.map((t) => ({ diffID: sha(t), open: async () => Readable.from([t]) }))))!;
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const target = join(tmp, `m${i}`);
      await mkdir(target);
      const t0 = performance.now();
      const mounts = await s.prepare(`k${i}`, top);
      const un = mountAll(mounts, target);
      times.push(performance.now() - t0);
      undo.push(un);
      expect(await readFile(join(target, 'top'), 'utf8')).toBe('layer 99');
    }
    expect(median(times)).toBeLessThan(50);
  });
});
