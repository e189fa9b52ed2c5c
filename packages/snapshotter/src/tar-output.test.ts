import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { releaseChunk } from '@tsbuild/oci';
import { BufferPool } from './buffer-pool.js';
import { encodeHeader, END_OF_ARCHIVE, padding, writeHeader, type TarHeader } from './tar-format.js';
import { TarOutput } from './tar-output.js';

const h = (over: Partial<TarHeader>): TarHeader => ({
  name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...over,
});

const dir = mkdtempSync(join(tmpdir(), 'tar-output-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function bytes(seed: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

describe('writeHeader', () => {
  it('writes the bytes encodeHeader gives at any offset of a dirty buffer, or nothing when they do not fit', () => {
    const headers = [
      h({ name: 'a/b', mode: 0o4755 }),
      h({ name: `${'x'.repeat(120)}/é${'y'.repeat(200)}`, type: 'symlink', linkname: 'l'.repeat(300), uid: 5_000_000 }),
      h({ xattrs: new Map([['user.k', Buffer.alloc(700, 0x61)], ['security.capability', Buffer.from([0, 0x80, 0xff])]]) }),
    ];
    for (const hdr of headers) {
      const want = encodeHeader(hdr);
      const out = Buffer.alloc(want.length + 700, 0xee);
      expect(writeHeader(hdr, out, 100)).toBe(want.length);
      expect(out.subarray(100, 100 + want.length)).toEqual(want);
      expect(out.subarray(0, 100).every((x) => x === 0xee)).toBe(true);
      expect(out.subarray(100 + want.length).every((x) => x === 0xee)).toBe(true);

      const tight = Buffer.alloc(want.length + 99, 0xee);
      expect(writeHeader(hdr, tight, 100)).toBe(0);
      expect(tight.every((x) => x === 0xee)).toBe(true);
    }
  });
});

describe('TarOutput', () => {
  it('cuts the same bytes into full chunks, whatever the chunk size, with file bodies read on the way', () => {
    const entries = [0, 1, 511, 512, 513, 1000, 4096, 4097, 9999, 20_000].map((size, i) => {
      const data = bytes(i, size);
      const p = join(dir, `f${i}`);
      writeFileSync(p, data);
      return { hdr: h({ name: `f${i}`, size }), p, data };
    });
    const big = h({ name: 'big-xattrs', xattrs: new Map([['user.big', bytes(99, 6000)]]) });
    const want = Buffer.concat([
      ...entries.flatMap(({ hdr, data }) => [encodeHeader(hdr), data, Buffer.alloc(padding(data.length))]),
      encodeHeader(big),
      END_OF_ARCHIVE,
    ]);

    for (const size of [1024, 1536, 4096, 65_536]) {
      const pool = new BufferPool(size, 4);
      const out = new TarOutput(pool);
      const chunks: Buffer[] = [];
      for (const { hdr, p, data } of entries) {
        out.header(hdr);
        const fd = openSync(p, 'r');
        try {
          const it = out.file(fd, data.length);
          let r = it.next();
          while (!r.done) {
            chunks.push(Buffer.from(r.value));
            r = it.next();
          }
          expect(r.value).toBe(data.length);
        } finally {
          closeSync(fd);
        }
        out.zeros(padding(data.length));
        chunks.push(...out.drain());
      }
      out.header(big); // bigger than a 1 KiB or 4 KiB chunk: spread over several
      out.zeros(END_OF_ARCHIVE.length);
      chunks.push(...out.end());
      expect(Buffer.concat(chunks)).toEqual(want);
      // Every chunk but the last is full: headers and bodies run across chunk ends.
      expect(chunks.slice(0, -1).filter((c) => c.length !== size)).toEqual([]);
    }
  });

  it('reports a file that ended early by the bytes it read', () => {
    const p = join(dir, 'short');
    writeFileSync(p, bytes(1, 100));
    const out = new TarOutput(new BufferPool(1024, 2));
    const fd = openSync(p, 'r');
    try {
      const it = out.file(fd, 300);
      let r = it.next();
      while (!r.done) r = it.next();
      expect(r.value).toBe(100);
    } finally {
      closeSync(fd);
    }
  });

  it('fills only buffers it owns: released chunks come back, unreleased ones are never written again', () => {
    const pool = new BufferPool(1024, 8);
    const out = new TarOutput(pool);
    const kept: { chunk: Buffer; copy: Buffer }[] = [];
    for (let i = 0; i < 200; i++) {
      out.header(h({ name: `e${i}` }));
      for (const c of out.drain()) {
        // Keep every third chunk (an accumulating consumer); release the others.
        if (i % 3 === 0) kept.push({ chunk: c, copy: Buffer.from(c) });
        else releaseChunk(c);
      }
    }
    for (const c of out.end()) kept.push({ chunk: c, copy: Buffer.from(c) });
    for (const { chunk, copy } of kept) expect(chunk).toEqual(copy);
    expect(pool.allocated).toBeLessThan(kept.length + 3);
  });
});
