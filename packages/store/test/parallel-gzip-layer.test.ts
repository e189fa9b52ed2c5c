import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { setImmediate as tick } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELEASE_CHUNK } from '@tsbuild/oci';
import { tarDirectory } from '@tsbuild/snapshotter';
import { makeLargeTree } from '../../snapshotter/test/large-tree.js';
import { ingestLayer } from '../src/layer-ingest.js';
import { createParallelGzip } from '../src/parallel-gzip.js';
import { Store } from '../src/store.js';

const JOB = 1024 * 1024; // DEFAULT_GZIP_CHUNK_SIZE

let tmp: string;
let tree: string;
/** The layer tar as a consumer that never releases gets it: the reference bytes. */
let tar: Buffer;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'parallel-gzip-layer-'));
  tree = join(tmp, 'tree');
  await makeLargeTree(tree);
  const chunks: Buffer[] = [];
  for await (const c of tarDirectory(tree)) chunks.push(c as Buffer);
  tar = Buffer.concat(chunks);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function pieces(b: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; off < b.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(b.subarray(off, off + n));
    off += n;
  }
  return out;
}

async function gzipOf(input: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(input), createParallelGzip(), async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

describe('parallel gzip of a layer tar from pooled buffers', () => {
  it('ingestLayer stores the blob the unpooled tar gives, while the tar writer reuses a handful of buffers', async () => {
    expect(tar.length).toBeGreaterThan(20 * JOB);
    const want = await gzipOf(pieces(tar, [100_000]));

    const seen = new Set<ArrayBufferLike>();
    let chunks = 0;
    const spy = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        seen.add(chunk.buffer);
        chunks++;
        cb(null, chunk); // the same object, release function and all
      },
    });
    const store = await Store.open(join(tmp, 'store'));
    const layer = await ingestLayer(store.content, tarDirectory(tree).pipe(spy), { compression: 'gzip' });

    expect(layer.diffID).toBe(sha256(tar));
    expect(layer.digest).toBe(sha256(want));
    expect(layer.size).toBe(want.length);
    const blob = await buffer(await store.content.read(layer.digest));
    expect(gunzipSync(blob).equals(tar)).toBe(true);
    // ~43 chunks of 512 KiB: gzip handed each back once copied, so the writer kept reusing them.
    expect(chunks).toBeGreaterThan(40);
    expect(seen.size).toBeLessThanOrEqual(8);
  });

  it('releases each lent chunk once, only after copying all of it: released memory is overwritten at once here', async () => {
    const released = new Map<Buffer, number>();
    // Pieces smaller than, equal to and larger than a job, so some are copied across an await.
    const lent = pieces(tar, [300_000, JOB, 1_700_000, 4096, 2 * JOB + 1]).map((p) => {
      const chunk = Buffer.from(p); // its own memory, which the release poisons
      Object.defineProperty(chunk, RELEASE_CHUNK, {
        value: () => {
          released.set(chunk, (released.get(chunk) ?? 0) + 1);
          chunk.fill(0xee);
        },
      });
      return chunk;
    });
    async function* slowly(): AsyncGenerator<Buffer> {
      for (const c of lent) {
        yield c;
        await tick(); // lets jobs finish between pieces, as a real producer does
      }
    }
    const gz = await gzipOf(slowly());
    expect(gunzipSync(gz).equals(tar)).toBe(true);
    expect(gz.equals(await gzipOf(pieces(tar, [100_000])))).toBe(true);
    expect(released.size).toBe(lent.length);
    expect([...released.values()].every((n) => n === 1)).toBe(true);
  });
});
