import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import { DEFAULT_GZIP_CHUNK_SIZE, DEFAULT_GZIP_LEVEL, createParallelGzip, type ParallelGzipOptions } from './parallel-gzip.js';

const SMALL_CHUNK = 64 * 1024; // many chunks from little data: the joins are what is tested

async function gzip(input: Buffer, opts: ParallelGzipOptions = {}, pieceSize = 50_000): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let off = 0; off < input.length; off += pieceSize) pieces.push(input.subarray(off, off + pieceSize));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), createParallelGzip(opts), async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

/** Runs a command with `input` on stdin and returns its stdout; rejects on a non-zero exit. */
function runWith(cmd: string, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`)),
    );
    child.stdin.on('error', () => undefined); // a failing tool may close stdin early
    child.stdin.end(input);
  });
}

/** Text-like data (compressible) interleaved with random runs (incompressible). */
function mixed(size: number): Buffer {
  const words = Buffer.from('usr/lib/x86_64-linux-gnu/libc.so.6 ELF \0\0\0\0 #!/bin/sh\nexec "$@"\n');
  const b = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const n = Math.min(size - off, 1000 + ((off * 7919) % 90_000));
    if ((off / 4096) % 3 < 1) randomBytes(n).copy(b, off);
    else for (let i = 0; i < n; i++) b[off + i] = words[(off + i) % words.length]!;
    off += n;
  }
  return b;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'parallel-gzip-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createParallelGzip', () => {
  const sizes = [
    0,
    1,
    100,
    32 * 1024 - 1,
    32 * 1024,
    32 * 1024 + 1,
    SMALL_CHUNK - 1,
    SMALL_CHUNK,
    SMALL_CHUNK + 1,
    2 * SMALL_CHUNK - 1,
    2 * SMALL_CHUNK,
    2 * SMALL_CHUNK + 1,
    10 * SMALL_CHUNK + 12_345,
  ];
  for (const size of sizes) {
    it(`round-trips ${size} random+text bytes through node gunzip, gzip -dc and pigz -dc`, async () => {
      const input = mixed(size);
      const gz = await gzip(input, { chunkSize: SMALL_CHUNK, concurrency: 3 }, 7_777);
      expect(gz.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 8]));
      expect(gunzipSync(gz).equals(input)).toBe(true);
      expect((await runWith('gzip', ['-dc'], gz)).equals(input)).toBe(true);
      expect((await runWith('pigz', ['-dc'], gz)).equals(input)).toBe(true);
    });
  }

  it('empty input is a valid gzip file that gzip -t and pigz -t accept', async () => {
    const gz = await gzip(Buffer.alloc(0));
    expect(gunzipSync(gz).length).toBe(0);
    const f = join(dir, 'empty.gz');
    await writeFile(f, gz);
    await runWith('gzip', ['-t', f], Buffer.alloc(0));
    await runWith('pigz', ['-t', f], Buffer.alloc(0));
  });

  it('several MB of mixed data with default chunks: one gzip member, gzip -t and pigz -t pass, bytes equal', async () => {
    const input = Buffer.concat([mixed(3 * DEFAULT_GZIP_CHUNK_SIZE + 999), randomBytes(DEFAULT_GZIP_CHUNK_SIZE), mixed(1 << 20)]);
    const gz = await gzip(input, {}, 65_536);
    const f = join(dir, 'big.gz');
    await writeFile(f, gz);
    await runWith('gzip', ['-t', f], Buffer.alloc(0));
    await runWith('pigz', ['-t', f], Buffer.alloc(0));
    expect(gunzipSync(gz).equals(input)).toBe(true);
    expect((await runWith('pigz', ['-dc'], gz)).equals(input)).toBe(true);
    // One member: the trailer at the very end holds the CRC and length of ALL the input, which
    // `gzip -l` reports (it reads only the last member's trailer).
    expect(gz.readUInt32LE(gz.length - 4)).toBe(input.length);
    const list = (await runWith('gzip', ['-lv', f], Buffer.alloc(0))).toString();
    expect(list).toContain(String(input.length));
  });

  it('writes no timestamp: the same input gives the same bytes, whatever the concurrency', async () => {
    const input = mixed(5 * SMALL_CHUNK + 3);
    const a = await gzip(input, { chunkSize: SMALL_CHUNK, concurrency: 1 });
    const b = await gzip(input, { chunkSize: SMALL_CHUNK, concurrency: 4 }, 1_000);
    expect(a.equals(b)).toBe(true);
    expect(a.readUInt32LE(4)).toBe(0); // MTIME
  });

  it('compresses close to a single deflate stream (the dictionary carries matches across chunks)', async () => {
    // A 20 KiB random block repeated: every chunk begins with bytes that only match the previous
    // chunk's tail. Without the dictionary each 64 KiB chunk would store ~20 KiB raw (~650 KiB
    // in all); with it the whole input compresses like one stream, to a few KiB per chunk.
    const block = randomBytes(20 * 1024);
    const input = Buffer.concat(Array.from({ length: 100 }, () => block));
    const gz = await gzip(input, { chunkSize: SMALL_CHUNK });
    const single = await runWith('gzip', ['-1', '-c'], input);
    expect(gz.length).toBeLessThan(single.length * 1.2);
    expect(gz.length).toBeLessThan(100 * 1024);
    expect(gunzipSync(gz).equals(input)).toBe(true);
  });

  it('a higher level gives a smaller output', async () => {
    const input = mixed(2 << 20);
    const l1 = await gzip(input, { level: 1 });
    const l9 = await gzip(input, { level: 9 });
    expect(DEFAULT_GZIP_LEVEL).toBe(1);
    expect(l9.length).toBeLessThan(l1.length);
    expect(gunzipSync(l9).equals(input)).toBe(true);
    expect(l1[8]).toBe(4); // XFL: fastest
    expect(l9[8]).toBe(2); // XFL: best
  });

  it('respects backpressure: a slow reader keeps the bytes in flight bounded', async () => {
    const chunkSize = SMALL_CHUNK;
    const total = 120 * chunkSize;
    let produced = 0;
    let consumed = 0;
    let maxAhead = 0;
    const src = new Readable({
      read() {
        if (produced >= total) {
          this.push(null);
          return;
        }
        const n = Math.min(16 * 1024, total - produced);
        produced += n;
        this.push(randomBytes(n)); // incompressible: output bytes ≈ input bytes
      },
    });
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, cb) {
        consumed += chunk.length;
        maxAhead = Math.max(maxAhead, produced - consumed);
        void sleep(2).then(() => cb());
      },
    });
    await pipeline(src, createParallelGzip({ chunkSize, concurrency: 2 }), slow);
    expect(consumed).toBeGreaterThan(total);
    // Without backpressure nearly all 120 chunks are read ahead (measured); allow the chunks in flight
    // plus the streams' own buffers.
    expect(maxAhead).toBeLessThan(8 * chunkSize);
  });

  it('an error in the source destroys the stream with that error', async () => {
    const src = new Readable({
      read() {
        this.destroy(new Error('source broke'));
      },
    });
    await expect(pipeline(src, createParallelGzip(), new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow('source broke');
  });

  it('rejects a level, chunk size or concurrency out of range with InvalidArgumentError', () => {
    expect(() => createParallelGzip({ level: 0 })).toThrow(InvalidArgumentError);
    expect(() => createParallelGzip({ level: 10 })).toThrow(/gzip level 10/);
    expect(() => createParallelGzip({ chunkSize: 1000 })).toThrow(InvalidArgumentError);
    expect(() => createParallelGzip({ concurrency: 0 })).toThrow(InvalidArgumentError);
  });
});
