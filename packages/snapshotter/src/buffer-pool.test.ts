import { describe, expect, it } from 'vitest';
import { RELEASE_CHUNK, releaseChunk, type ReleasableChunk } from '@tsbuild/oci';
import { BufferPool } from './buffer-pool.js';

describe('BufferPool', () => {
  it('reuses a buffer only after the chunk lent from it is released', () => {
    const pool = new BufferPool(16, 4);
    const a = pool.take();
    const chunk = pool.lend(a, 10);
    expect(chunk.buffer).toBe(a.buffer);
    expect(chunk.length).toBe(10);
    const b = pool.take();
    expect(b).not.toBe(a); // still lent out: a new buffer
    releaseChunk(chunk);
    expect(pool.take()).toBe(a);
    expect(pool.allocated).toBe(2);
  });

  it('a second release of the same chunk does not put its buffer back twice', () => {
    const pool = new BufferPool(16, 4);
    const chunk = pool.lend(pool.take(), 16);
    releaseChunk(chunk);
    releaseChunk(chunk);
    const first = pool.take();
    const second = pool.take();
    expect(second).not.toBe(first);
  });

  it('keeps at most maxFree released buffers', () => {
    const pool = new BufferPool(8, 2);
    const chunks = [0, 1, 2].map(() => pool.lend(pool.take(), 8));
    for (const c of chunks) releaseChunk(c);
    pool.take();
    pool.take();
    pool.take();
    expect(pool.allocated).toBe(4);
  });

  it('the release function travels with the chunk object only: slices, copies and plain buffers have none', () => {
    const pool = new BufferPool(8, 2);
    const chunk = pool.lend(pool.take(), 8) as ReleasableChunk;
    expect(typeof chunk[RELEASE_CHUNK]).toBe('function');
    expect((chunk.subarray(1) as ReleasableChunk)[RELEASE_CHUNK]).toBeUndefined();
    expect((Buffer.from(chunk) as ReleasableChunk)[RELEASE_CHUNK]).toBeUndefined();
    expect(Object.getOwnPropertyDescriptor(chunk, RELEASE_CHUNK)?.enumerable).toBe(false); // equality checks ignore it
    expect(() => releaseChunk(Buffer.alloc(3))).not.toThrow();
  });

  it('the symbol is the registered one, so @tsbuild/store can name it without importing this package', () => {
    expect(RELEASE_CHUNK).toBe(Symbol.for('tsbuild.releaseChunk'));
  });
});
