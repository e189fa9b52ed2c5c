/**
 * Output buffers that a stream's consumer may hand back for reuse.
 *
 * Why: a layer tar is ~200 MB of bytes that each pass through one output buffer. Fresh buffers
 * are external memory that V8 frees only at its next GC, which external allocation triggers
 * after tens of MB; so a producer that allocates as it goes peaks at 60–70 MB of dead buffers
 * (measured on the Debian rootfs). Reused buffers keep it at a few.
 *
 * The lending protocol (who may release a chunk, and when) is RELEASE_CHUNK's, in @tsbuild/oci.
 */
import { RELEASE_CHUNK } from '@tsbuild/oci';

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
