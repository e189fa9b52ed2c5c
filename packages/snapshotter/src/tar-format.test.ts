import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { encodeHeader, END_OF_ARCHIVE, parsePax, type TarHeader } from './tar-format.js';
import { readTar } from './tar-reader.js';

const h = (over: Partial<TarHeader>): TarHeader => ({
  name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...over,
});

async function roundTrip(hdr: TarHeader): Promise<TarHeader> {
  for await (const e of readTar(Readable.from([Buffer.concat([encodeHeader(hdr), END_OF_ARCHIVE])]))) {
    const rest: Partial<typeof e> = { ...e };
    delete rest.body;
    return rest as TarHeader;
  }
  throw new Error('no entry');
}

describe('tar-format', () => {
  it('writes a plain ustar header for short ASCII names and no extras', () => {
    const b = encodeHeader(h({ name: 'a/b', mode: 0o4755 }));
    expect(b.length).toBe(512);
    expect(b.toString('latin1', 257, 265)).toBe('ustar\x0000');
    expect(b.toString('latin1', 100, 108)).toBe('0004755\0');
  });

  it('keeps mode 0, long, non-ASCII names, long link targets, large ids and binary xattrs', async () => {
    const hdr = h({
      name: `${'x'.repeat(120)}/é${'y'.repeat(200)}`, type: 'symlink', mode: 0, linkname: 'l'.repeat(300),
      uid: 5_000_000, gid: 70_000_000, mtime: 1_700_000_000, xattrs: new Map([['security.capability', Buffer.from([0, 0x80, 0xff, 0x0a, 0x3d])]]),
    });
    expect(await roundTrip(hdr)).toEqual(hdr);
  });

  it('splits names over 100 bytes into ustar prefix/name when it can', async () => {
    const name = `${'p'.repeat(120)}/${'n'.repeat(90)}`;
    const b = encodeHeader(h({ name }));
    expect(b.length).toBe(512);
    expect((await roundTrip(h({ name }))).name).toBe(name);
  });

  it('pax record lengths count their own digits at every boundary', () => {
    for (let n = 0; n < 1200; n += 7) {
      const v = Buffer.alloc(n, 0x61);
      const b = encodeHeader(h({ xattrs: new Map([['user.k', v]]) }));
      const size = parseInt(b.toString('latin1', 124, 135), 8);
      expect(parsePax(b.subarray(512, 512 + size), 'test').get('SCHILY.xattr.user.k')).toEqual(v);
    }
  });
});
