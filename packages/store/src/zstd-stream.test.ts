import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import { createZstdCompress, createZstdDecompress, type ZstdOptions } from './zstd-stream.js';

async function through(input: Buffer, t: NodeJS.ReadWriteStream): Promise<Buffer> {
  const out: Buffer[] = [];
  const pieces: Buffer[] = [];
  for (let off = 0; off < input.length; off += 100_000) pieces.push(input.subarray(off, off + 100_000));
  await pipeline(Readable.from(pieces), t, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

const compress = (input: Buffer, opts: ZstdOptions = {}): Promise<Buffer> => through(input, createZstdCompress(opts));

function zstdCli(args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`zstd ${args.join(' ')} exited ${code}: ${err}`))));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

function mixed(size: number): Buffer {
  const text = Buffer.from('etc/ssl/certs/ca-certificates.crt\n-----BEGIN CERTIFICATE-----\n');
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = text[i % text.length]!;
  for (let off = 0; off < size; off += 300_000) randomBytes(Math.min(100_000, size - off)).copy(b, off);
  return b;
}

describe('zstd layer compression (zstd-napi)', () => {
  for (const size of [0, 1, 131_071, 5 << 20]) {
    it(`round-trips ${size} bytes with multi-threaded compression; zstd -dc reads it`, async () => {
      const input = mixed(size);
      const z = await compress(input, { workers: 2 });
      expect(z.readUInt32LE(0)).toBe(0xfd2fb528); // zstd frame magic
      expect((await zstdCli(['-dc'], z)).equals(input)).toBe(true);
      expect((await through(z, createZstdDecompress())).equals(input)).toBe(true);
    });
  }

  it('decompresses what the zstd command wrote', async () => {
    const input = mixed(3 << 20);
    const z = await zstdCli(['-3', '-T2', '-c'], input);
    expect((await through(z, createZstdDecompress())).equals(input)).toBe(true);
  });

  it('a higher level gives a smaller output; the frame carries a checksum zstd -t verifies', async () => {
    const input = mixed(4 << 20);
    const l1 = await compress(input, { level: 1 });
    const l19 = await compress(input, { level: 19 });
    expect(l19.length).toBeLessThan(l1.length);
    await zstdCli(['-t'], l19);
    // Frame header descriptor byte: bit 2 is Content_Checksum_flag (RFC 8878 §3.1.1.1.1).
    expect((l1[4]! >> 2) & 1).toBe(1);
  });

  it('a truncated stream is an error, not a short tar', async () => {
    const z = await compress(mixed(1 << 20));
    await expect(through(z.subarray(0, z.length - 100), createZstdDecompress())).rejects.toThrow(/ended in middle/);
  });

  it('rejects a level or worker count out of range with InvalidArgumentError', () => {
    expect(() => createZstdCompress({ level: 0 })).toThrow(InvalidArgumentError);
    expect(() => createZstdCompress({ level: 23 })).toThrow(/zstd level 23/);
    expect(() => createZstdCompress({ workers: -1 })).toThrow(InvalidArgumentError);
  });
});
