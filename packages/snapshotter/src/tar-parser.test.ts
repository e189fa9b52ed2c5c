import { describe, expect, it } from 'vitest';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from './tar-format.js';
import { TarParser } from './tar-parser.js';

const h = (over: Partial<TarHeader>): TarHeader => ({
  name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...over,
});

function tar(entries: [TarHeader, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [hdr, body] of entries) parts.push(encodeHeader({ ...hdr, size: body.length }), body, Buffer.alloc(padding(body.length)));
  return Buffer.concat([...parts, END_OF_ARCHIVE, Buffer.from('trailing bytes after the end are ignored')]);
}

function parse(chunks: Buffer[]): { name: string; type: string; body: string; ended: boolean }[] {
  const out: { name: string; type: string; body: string; ended: boolean }[] = [];
  let cur: { name: string; type: string; body: Buffer[] } | undefined;
  const p = new TarParser({
    entry: (e) => void (cur = { name: e.name, type: e.type, body: [] }),
    data: (c) => void cur!.body.push(Buffer.from(c)),
    end: () => void out.push({ name: cur!.name, type: cur!.type, body: Buffer.concat(cur!.body).toString(), ended: true }),
  });
  for (const c of chunks) p.push(c);
  p.finish();
  return out;
}

describe('TarParser', () => {
  const sample = tar([
    [h({ name: 'a' }), Buffer.from('hello')],
    [h({ name: `${'long/'.repeat(40)}name`, xattrs: new Map([['user.k', Buffer.from([0, 1, 2])]]) }), Buffer.alloc(1500, 0x61)],
    [h({ name: 'd/', type: 'dir' }), Buffer.alloc(0)],
    [h({ name: 'empty' }), Buffer.alloc(0)],
    [h({ name: 'l', type: 'symlink', linkname: 'a' }), Buffer.alloc(0)],
  ]);
  const want = parse([sample]);

  it('reports every entry with its body, in order', () => {
    expect(want.map((e) => [e.name, e.type, e.body.length])).toEqual([
      ['a', 'file', 5], [`${'long/'.repeat(40)}name`, 'file', 1500], ['d/', 'dir', 0], ['empty', 'file', 0], ['l', 'symlink', 0],
    ]);
  });

  it('gives the same entries however the stream is cut into chunks', () => {
    for (const size of [1, 7, 511, 512, 513, 1000]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < sample.length; i += size) chunks.push(sample.subarray(i, i + size));
      expect(parse(chunks)).toEqual(want);
    }
  });

  it('refuses a stream that ends inside an entry', () => {
    expect(() => parse([sample.subarray(0, 600)])).toThrow(/unexpected end of data at entry 0 "a"/);
    expect(() => parse([sample.subarray(0, 100)])).toThrow(/unexpected end of data/);
    expect(parse([sample.subarray(0, 1024)])).toHaveLength(1); // a clean end between entries is accepted
  });

  it('splits pax mtime and atime into exact seconds and nanoseconds, before the epoch too', () => {
    const times: Record<string, { mtime: number; mtimeNsec?: number; atime?: { sec: number; nsec: number } }> = {};
    const p = new TarParser({
      entry: (e) => void (times[e.name] = { mtime: e.mtime, ...(e.mtimeNsec !== undefined ? { mtimeNsec: e.mtimeNsec } : {}), ...(e.atime ? { atime: e.atime } : {}) }),
      data: () => undefined,
      end: () => undefined,
    });
    const paxEntry = (name: string, records: string[]): Buffer => {
      const body = Buffer.from(records.map((r) => { let n = r.length + 3; while (`${n} ${r}\n`.length !== n) n++; return `${n} ${r}\n`; }).join(''));
      const hdr = encodeHeader(h({ name: 'PaxHeader', size: body.length }));
      hdr[156] = 'x'.charCodeAt(0);
      hdr.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of hdr) sum += b;
      hdr.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
      return Buffer.concat([hdr, body, Buffer.alloc(padding(body.length)), encodeHeader(h({ name }))]);
    };
    p.push(Buffer.concat([
      paxEntry('a', ['mtime=1600000000.123456789', 'atime=1500000000.5']),
      paxEntry('b', ['mtime=-1.25']),
      paxEntry('c', ['mtime=7']),
      END_OF_ARCHIVE,
    ]));
    p.finish();
    expect(times).toEqual({
      a: { mtime: 1_600_000_000, mtimeNsec: 123_456_789, atime: { sec: 1_500_000_000, nsec: 500_000_000 } },
      b: { mtime: -2, mtimeNsec: 750_000_000 },
      c: { mtime: 7 },
    });
  });
});
