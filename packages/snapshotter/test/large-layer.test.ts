import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tarDirectory } from '../src/index.js';
import { RELEASE_CHUNK, releaseChunk, type ReleasableChunk } from '@tsbuild/oci';
import { readTar } from '../src/tar-reader.js';
import { CHUNK, makeLargeTree } from './large-tree.js';

/**
 * The layer tar of makeLargeTree(), as written by the layer writer before output buffers were
 * pooled (fresh buffers, whole big files read before being handed on): pooling and the chunking
 * that came with it must not change a byte.
 */
const GOLDEN = { length: 22_417_408, sha256: '8863480607c376d21a7418211f29ed4ee3a3cc11ba13f8f3f1c08325f65f8535' };

let tmp: string;
let tree: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'tsbuild-large-layer-'));
  tree = join(tmp, 'tree');
  await makeLargeTree(tree);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('a large layer through pooled output buffers', () => {
  it('a consumer that never releases gets the golden bytes, every chunk in a buffer of its own', async () => {
    const chunks: Buffer[] = [];
    for await (const c of tarDirectory(tree)) chunks.push(c as Buffer);
    const tar = Buffer.concat(chunks);
    expect(tar.length).toBe(GOLDEN.length);
    expect(sha256(tar)).toBe(GOLDEN.sha256);
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length);
    expect(chunks.slice(0, -1).every((c) => c.length === CHUNK)).toBe(true);
    // The tar is well-formed: every entry reads back, the 7 MiB file among them.
    const names: string[] = [];
    for await (const e of readTar(Readable.from([tar]))) names.push(e.name);
    expect(names).toContain('sizes/f16-7344353');
    expect(names).toHaveLength(633);
  });

  it('a consumer that releases late gets the golden bytes: no chunk is overwritten before its release', async () => {
    const hash = createHash('sha256');
    const buffers = new Set<ArrayBufferLike>();
    let chunks = 0;
    let length = 0;
    const held: { chunk: Buffer; copy: Buffer }[] = [];
    for await (const c of tarDirectory(tree)) {
      const chunk = c as ReleasableChunk;
      expect(typeof chunk[RELEASE_CHUNK]).toBe('function');
      hash.update(chunk);
      length += chunk.length;
      chunks++;
      buffers.add(chunk.buffer);
      held.push({ chunk, copy: Buffer.from(chunk) });
      // Hold each chunk for three more chunks and some turns of the event loop (as gzip jobs
      // and file writes do), then check it is intact and release it.
      if (held.length > 3) {
        await tick();
        const { chunk: old, copy } = held.shift()!;
        expect(old.equals(copy)).toBe(true);
        releaseChunk(old);
      }
    }
    for (const { chunk, copy } of held) expect(chunk.equals(copy)).toBe(true);
    expect(length).toBe(GOLDEN.length);
    expect(hash.digest('hex')).toBe(GOLDEN.sha256);
    // ~43 chunks through a handful of buffers: the pool did reuse them.
    expect(chunks).toBeGreaterThan(40);
    expect(buffers.size).toBeLessThanOrEqual(6);
  });
});
