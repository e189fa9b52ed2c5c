import { availableParallelism } from 'node:os';
import { Duplex } from 'node:stream';
import type { ZlibOptions } from 'node:zlib';
import { InvalidArgumentError, releaseChunk, zlib } from '@tsbuild/oci';
import { checkLevel } from './compression-level.js';

/**
 * Parallel gzip with node:zlib, after pigz: ONE standard gzip member (RFC 1952) whose deflate
 * body is compressed in independent pieces on the libuv thread pool.
 *
 * How the pieces join into a single deflate stream (RFC 1951):
 *   - The input is cut into chunks of `chunkSize` bytes. Each chunk is compressed by its own
 *     `zlib.deflateRaw` (async, so it runs on a pool thread) with `dictionary` = the last 32 KiB
 *     of the input before it. Deflate back-references reach at most 32 KiB back, and the
 *     decompressor's window at that point holds exactly those bytes, so a chunk compressed
 *     against them as a preset dictionary decodes as if it had been compressed in one run.
 *   - Every chunk but the last ends with Z_SYNC_FLUSH: the deflate blocks are closed, none has
 *     BFINAL set, and an empty stored block (00 00 ff ff) pads the output to a byte boundary,
 *     so the next chunk's bytes can simply be appended. The last chunk ends with Z_FINISH, whose
 *     final block carries BFINAL.
 *   - The 10-byte gzip header goes in front; the trailer is the CRC-32 of all input (computed
 *     on the main thread as chunks are cut, with zlib.crc32) and ISIZE = input length mod 2^32.
 * Empty input is one empty final block (03 00) between header and trailer: a valid gzip file.
 *
 * Memory is bounded: at most `concurrency` chunks are compressing at once, each holding its input
 * and output buffers; the stream stops reading input until the oldest chunk is done, and stops
 * compressing when its reader does not read (backpressure through Duplex.from). Input is copied
 * into at most `concurrency` reused chunk buffers, and an input piece lent from a pool (a layer tar
 * from @tsbuild/snapshotter's diff) is handed back to it once copied (RELEASE_CHUNK, @tsbuild/oci).
 * Compression ratio is within a fraction of a percent of one deflate stream at the same level:
 * a chunk loses only the matching state (hash chains) the dictionary does not rebuild, plus
 * 5 bytes of stored-block marker per chunk.
 */
export interface ParallelGzipOptions {
  /** zlib level 1–9. Default DEFAULT_GZIP_LEVEL. */
  level?: number;
  /** Input bytes per chunk compressed as one job. Default DEFAULT_GZIP_CHUNK_SIZE. */
  chunkSize?: number;
  /** Chunks compressing at once. Default DEFAULT_GZIP_CONCURRENCY. */
  concurrency?: number;
}

/**
 * Measured over the 204 MB Debian tar at level 1 on this 2-core machine (best of 6, while other
 * work shared the machine; tar → sha256 → gzip → blob file): 256 KiB chunks 1.96 s, 512 KiB
 * 1.66 s, 1 MiB 1.58–1.66 s, 2 MiB 1.58–2.03 s. Each chunk pays for loading its 32 KiB
 * dictionary into zlib's hash table (~3 % of a 1 MiB chunk's work) and a pool round trip, so
 * small chunks cost CPU; big ones only add memory. 1 MiB chunks give output within 0.05 % of
 * one deflate stream.
 */
export const DEFAULT_GZIP_CHUNK_SIZE = 1024 * 1024;

/**
 * One job more than there are CPUs, so a core never waits while the main thread cuts the next
 * chunk; but at most the libuv pool's size less one (UV_THREADPOOL_SIZE, 4 by default), because
 * the blob writer's file writes queue on the same pool and must not wait behind compression.
 */
export const DEFAULT_GZIP_CONCURRENCY = Math.max(2, Math.min(availableParallelism() + 1, poolSize() - 1));

/**
 * gzip level for layers. Measured on this 2-core machine committing a 204 MB tar of a Debian
 * rootfs through ingestLayer (tar → sha256 → this gzip → fsync'd blob), median of 3, CPU
 * including tar; `tar -c | pigz -p2 -1 > /dev/null` took 1.42 s (2.66 s CPU) in the same runs:
 *   level 1: 1.57 s, 2.87 s CPU, 98.70 MB     level 2: 1.67 s, 2.96 s CPU, 97.54 MB
 *   level 3: 1.68 s, 3.12 s CPU, 96.86 MB     level 4: 1.81 s, 3.35 s CPU, 94.95 MB
 *   level 6: 2.36 s, 4.39 s CPU, 93.48 MB     level 9: 5.43 s, 10.4 s CPU, 93.27 MB
 * Each step up buys 1–2 % of bytes for 3–30 % more CPU, and a build compresses every layer it
 * makes while it pushes only some; level 1 keeps the commit within 1.2× of pigz -1.
 */
export const DEFAULT_GZIP_LEVEL = 1;

const WINDOW = 32 * 1024; // deflate's maximum match distance (RFC 1951 §3.2.5)

/**
 * zlib's memLevel 9 (default 8) doubles the hash table (fewer collisions, shorter chains) and
 * the symbol buffer (half as many block headers, each with its Huffman tables to build). Over
 * the 204 MB Debian tar at level 1 it took 1.86 s of CPU instead of 2.12–2.21 s, for 0.14 %
 * more output; each job's zlib state grows by about 200 KiB.
 */
const MEM_LEVEL = 9;

export function createParallelGzip(opts: ParallelGzipOptions = {}): Duplex {
  const level = checkLevel('gzip', opts.level ?? DEFAULT_GZIP_LEVEL);
  const chunkSize = opts.chunkSize ?? DEFAULT_GZIP_CHUNK_SIZE;
  const concurrency = opts.concurrency ?? DEFAULT_GZIP_CONCURRENCY;
  if (!Number.isInteger(chunkSize) || chunkSize < WINDOW) {
    throw new InvalidArgumentError(`gzip chunk size ${String(chunkSize)} is too small: want an integer of at least ${WINDOW}`);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError(`gzip concurrency ${String(concurrency)} is invalid: want a positive integer`);
  }
  return Duplex.from(async function* (source: AsyncIterable<Buffer | string>) {
    yield* gzipChunks(source, level, chunkSize, concurrency);
  });
}

interface Job {
  input: Buffer;
  out: Promise<Buffer>;
  done: boolean;
}

async function* gzipChunks(
  source: AsyncIterable<Buffer | string>,
  level: number,
  chunkSize: number,
  concurrency: number,
): AsyncGenerator<Buffer> {
  const jobs: Job[] = [];
  let crc = 0;
  let isize = 0;
  let dictionary: Buffer | undefined;
  // Input buffers of finished jobs, refilled instead of allocating a new chunk each time: fewer
  // large allocations for the GC to reclaim late, so a lower peak RSS.
  const spare: Buffer[] = [];

  const dispatch = (input: Buffer, last: boolean): void => {
    crc = zlib().crc32(input, crc);
    isize = (isize + input.length) % 0x1_0000_0000;
    const job: Job = { input, out: compressChunk(input, level, dictionary, last), done: false };
    // Settle-tracking only; a rejection is still thrown where the job is awaited. The no-op
    // catch keeps a job abandoned by a destroyed stream from becoming an unhandled rejection.
    job.out.then(
      () => (job.done = true),
      () => (job.done = true),
    );
    jobs.push(job);
    dictionary = nextDictionary(dictionary, input);
  };

  yield gzipHeader(level);
  const finish = async (): Promise<Buffer> => {
    const job = jobs.shift()!;
    const out = await job.out;
    if (job.input.length === chunkSize && spare.length <= concurrency) spare.push(job.input);
    return out;
  };
  let chunk: Buffer = Buffer.allocUnsafe(chunkSize);
  let fill = 0;
  for await (const piece of source) {
    const buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
    let off = 0;
    while (off < buf.length) {
      const n = Math.min(buf.length - off, chunkSize - fill);
      buf.copy(chunk, fill, off, off + n);
      fill += n;
      off += n;
      if (fill < chunkSize) continue;
      dispatch(chunk, false);
      // Wait while the pipeline is full; hand finished output on early either way.
      while (jobs.length > 0 && (jobs.length >= concurrency || jobs[0]!.done)) yield await finish();
      // The dispatched buffer belongs to its job until the job is done (then it is spare).
      chunk = spare.pop() ?? Buffer.allocUnsafe(chunkSize);
      fill = 0;
    }
    // Every byte of the piece is copied into our own chunks, and a stage before us (ingestLayer's
    // sha256 Transform) finished with it synchronously: we hold it last, so give it back.
    if (typeof piece !== 'string') releaseChunk(piece);
  }
  dispatch(chunk.subarray(0, fill), true);
  while (jobs.length > 0) yield await finish();
  yield gzipTrailer(crc, isize);
}

function compressChunk(input: Buffer, level: number, dictionary: Buffer | undefined, last: boolean): Promise<Buffer> {
  const options: ZlibOptions = {
    level,
    memLevel: MEM_LEVEL,
    finishFlush: last ? zlib().constants.Z_FINISH : zlib().constants.Z_SYNC_FLUSH,
    // One output buffer big enough for the whole chunk even when incompressible (stored blocks
    // add 5 bytes per 16 KiB): zlib then returns in one pass instead of one pool round trip per
    // default 16 KiB of output.
    chunkSize: input.length + (input.length >> 8) + 1024,
  };
  if (dictionary !== undefined) options.dictionary = dictionary;
  return new Promise((resolve, reject) => {
    zlib().deflateRaw(input, options, (err, out) => (err ? reject(err) : resolve(out)));
  });
}

/**
 * The last 32 KiB of input seen so far (what the decompressor's window holds after `input`), as
 * a copy: `input` goes back to the spare buffers and is overwritten once its job is done.
 */
function nextDictionary(prev: Buffer | undefined, input: Buffer): Buffer | undefined {
  if (input.length >= WINDOW) return Buffer.from(input.subarray(input.length - WINDOW));
  if (input.length === 0) return prev;
  // Only the last chunk can be shorter than the window; keep this correct for any caller anyway.
  const joined = Buffer.concat(prev === undefined ? [input] : [prev, input]);
  return joined.subarray(Math.max(0, joined.length - WINDOW));
}

/**
 * RFC 1952 §2.3: ID1 ID2 CM=8 (deflate) FLG=0, MTIME=0 (no time: the same tar gives the same
 * blob digest), XFL=4 for the fastest level / 2 for the best, OS=255 (unknown; a layer is not
 * tied to the host's file system, and Go's compress/gzip writes the same).
 */
function gzipHeader(level: number): Buffer {
  const xfl = level === 1 ? 4 : level === 9 ? 2 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
}

/** RFC 1952 §2.3: CRC32 then ISIZE, both little-endian. */
function gzipTrailer(crc: number, isize: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32LE(crc >>> 0, 0);
  b.writeUInt32LE(isize >>> 0, 4);
  return b;
}

function poolSize(): number {
  const n = Number.parseInt(process.env['UV_THREADPOOL_SIZE'] ?? '', 10);
  return Number.isInteger(n) && n > 0 ? n : 4;
}
