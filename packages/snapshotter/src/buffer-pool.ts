/**
 * Output buffers that a stream's consumer may hand back for reuse.
 *
 * Why: a layer tar is ~200 MB of bytes that each pass through one output buffer. Fresh buffers
 * are external memory that V8 frees only at its next GC, which external allocation triggers
 * after tens of MB; so a producer that allocates as it goes peaks at 60–70 MB of dead buffers
 * (measured on the Debian rootfs). Reused buffers keep it at a few.
 *
 * The protocol, between a producer (the layer tar writer) and a consumer it does not know
 * (parallel gzip in @tsbuild/store, which must not import this package):
 *   - A chunk the producer emits may carry a function under the registered symbol
 *     `Symbol.for('tsbuild.releaseChunk')` (RELEASE_CHUNK). Pass-through stages (a hashing
 *     Transform, Duplex.from) hand the same Buffer object on, so the function travels with it;
 *     a slice or copy of the chunk does not carry it.
 *   - The consumer that holds the chunk LAST — it has copied or finished with the bytes, and no
 *     other stage still holds the chunk or a view of it — may call the function, once. The
 *     producer may then overwrite the memory. A stage that hands one chunk to several consumers
 *     (a tee) must hand on copies, or none of them may release.
 *   - A consumer that never releases loses nothing but the reuse: the producer allocates a fresh
 *     buffer whenever none has come back, and unreleased buffers are garbage-collected.
 * So a chunk is recycled only on an explicit promise from its last holder; no chunk is reused
 * on a guess about how long a consumer keeps it (a file writer holds a chunk until its write(2)
 * completes, an accumulating reader holds it forever).
 */
export const RELEASE_CHUNK: unique symbol = Symbol.for('tsbuild.releaseChunk');

/** A chunk that may carry the release function (see RELEASE_CHUNK). */
export interface ReleasableChunk extends Buffer {
  [RELEASE_CHUNK]?: () => void;
}

/** Calls a chunk's release function if it has one: for the chunk's last holder only. */
export function releaseChunk(chunk: Uint8Array): void {
  (chunk as ReleasableChunk)[RELEASE_CHUNK]?.();
}

/**
 * Buffers of one size, lent out as chunks and taken back when their consumer releases them.
 * Not shared between streams: one pool per layer tar.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  /** Buffers allocated so far (lent out or free); for tests and measurements. */
  allocated = 0;

  /**
   * @param bufferSize bytes per buffer
   * @param maxFree buffers kept for reuse at most; a release beyond that leaves the buffer to the GC
   */
  constructor(
    readonly bufferSize: number,
    private readonly maxFree: number,
  ) {}

  /** A buffer to fill: a released one if there is one, else a new one. */
  take(): Buffer {
    const b = this.free.pop();
    if (b !== undefined) return b;
    this.allocated++;
    return Buffer.allocUnsafe(this.bufferSize);
  }

  /** Puts back a buffer from take() that was never lent out. */
  putBack(buf: Buffer): void {
    if (this.free.length < this.maxFree) this.free.push(buf);
  }

  /**
   * The first `length` bytes of `buf` (from take()) as a chunk to emit, carrying a release
   * function that returns `buf` to the pool. The function works once: a second call does nothing,
   * so a buffer can never be in the free list twice (and lent to two chunks at once).
   */
  lend(buf: Buffer, length: number): Buffer {
    const chunk = buf.subarray(0, length);
    let lent = true;
    Object.defineProperty(chunk, RELEASE_CHUNK, {
      value: () => {
        if (!lent) return;
        lent = false;
        this.putBack(buf);
      },
    });
    return chunk;
  }
}
