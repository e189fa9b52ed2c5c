import { readSync } from 'node:fs';
import type { BufferPool } from './buffer-pool.js';
import { encodeHeader, writeHeader, type TarHeader } from './tar-format.js';

/**
 * The byte side of a layer tar being written: headers, file bodies and padding packed into
 * full chunks of the pool's buffer size, each handed on as soon as it is full.
 *
 * Nothing is copied on the way: headers are encoded straight into the chunk being filled and
 * file bodies are pread(2) into it, so every byte of the layer is written once, into a pooled
 * buffer (see BufferPool for when one is reused); only the headers that straddle the end of a
 * chunk (about one per chunk) are encoded apart and copied. Chunks are cut where they fill, not
 * at entry boundaries, so every chunk but the last is full and a big file costs one read(2) per
 * chunk.
 */
export class TarOutput {
  private buf: Buffer;
  private used = 0;
  /** Full chunks not yet handed on, oldest first. */
  private readonly ready: Buffer[] = [];

  constructor(private readonly pool: BufferPool) {
    this.buf = pool.take();
  }

  /** Appends an entry's headers (pax header first when needed). */
  header(h: TarHeader): void {
    const n = writeHeader(h, this.buf, this.used);
    if (n > 0) this.used += n;
    else this.put(encodeHeader(h)); // across the end of the chunk: about once per chunk
  }

  /** Appends `n` zero bytes (body padding, the end-of-archive blocks). */
  zeros(n: number): void {
    let left = n;
    while (left > 0) {
      if (this.used === this.buf.length) this.cut();
      const k = Math.min(left, this.buf.length - this.used);
      this.buf.fill(0, this.used, this.used + k);
      this.used += k;
      left -= k;
    }
  }

  /**
   * Appends the first `size` bytes of the open file `fd`, read with pread(2) straight into the
   * chunk being filled, and hands on each chunk that fills on the way (so a big file never sits
   * in memory whole). Returns the bytes read: fewer than `size` if the file ended early.
   */
  *file(fd: number, size: number): Generator<Buffer, number, undefined> {
    let read = 0;
    while (read < size) {
      if (this.used === this.buf.length) {
        this.cut();
        yield* this.drain();
      }
      const n = readSync(fd, this.buf, this.used, Math.min(this.buf.length - this.used, size - read), read);
      if (n === 0) break;
      this.used += n;
      read += n;
    }
    return read;
  }

  /** Hands on the chunks that are full, oldest first. */
  *drain(): Generator<Buffer, void, undefined> {
    while (this.ready.length > 0) yield this.ready.shift()!;
  }

  /** Hands on everything written, the last chunk however full; the output is finished. */
  *end(): Generator<Buffer, void, undefined> {
    if (this.used > 0) this.ready.push(this.pool.lend(this.buf, this.used));
    else this.pool.putBack(this.buf);
    this.used = 0;
    yield* this.drain();
  }

  private put(b: Buffer): void {
    let off = 0;
    while (off < b.length) {
      if (this.used === this.buf.length) this.cut();
      const k = b.copy(this.buf, this.used, off);
      this.used += k;
      off += k;
    }
  }

  /** Queues the chunk being filled and starts a new one. */
  private cut(): void {
    this.ready.push(this.pool.lend(this.buf, this.used));
    this.buf = this.pool.take();
    this.used = 0;
  }
}
