import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailedPreconditionError, InvalidArgumentError, MediaType, sha256Of } from '@tsbuild/oci';
import { storedLayer } from './image.js';
import { ingestLayer } from './layer-ingest.js';
import { Store } from './store.js';

let root: string;
let store: Store;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'layer-ingest-'));
  store = await Store.open(root);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Stands in for a layer tar: the store does not look inside. Half text, half random. */
function fakeTar(size: number): Buffer {
  const b = Buffer.alloc(size, 'bin/busybox\0usr/share/doc/\n');
  randomBytes(size >> 1).copy(b, size >> 2);
  return b;
}

function pieces(b: Buffer, n = 65_536): Readable {
  const out: Buffer[] = [];
  for (let off = 0; off < b.length; off += n) out.push(b.subarray(off, off + n));
  return Readable.from(out);
}

function decompressWith(cmd: string, file: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, ['-dc', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} -dc ${file} exited ${code}: ${err}`))));
  });
}

describe('ingestLayer', () => {
  it('gzip (default): digest/size of the stored blob and diffID of the tar from one pass', async () => {
    const tar = fakeTar(5 << 20);
    const l = await ingestLayer(store.content, pieces(tar));
    expect(l.mediaType).toBe(MediaType.OciLayerGzip);
    expect(l.diffID).toBe(sha256Of(tar));
    const blob = await readFile(store.content.path(l.digest));
    expect(l.digest).toBe(sha256Of(blob));
    expect(l.size).toBe(blob.length);
    expect(gunzipSync(blob).equals(tar)).toBe(true);
    expect((await decompressWith('pigz', store.content.path(l.digest))).equals(tar)).toBe(true);
    // Nothing left behind: the blob file was the only copy written.
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });

  it('gzip level changes the blob but not the diffID', async () => {
    const tar = fakeTar(3 << 20);
    const fast = await ingestLayer(store.content, pieces(tar), { compression: 'gzip', level: 1 });
    const best = await ingestLayer(store.content, pieces(tar), { compression: 'gzip', level: 9 });
    expect(best.size).toBeLessThan(fast.size);
    expect(best.diffID).toBe(fast.diffID);
    expect(best.digest).not.toBe(fast.digest);
  });

  it('zstd: the blob is a zstd frame that zstd -dc and Layer.uncompressed() turn back into the tar', async () => {
    const tar = fakeTar(4 << 20);
    const l = await ingestLayer(store.content, pieces(tar), { compression: 'zstd' });
    expect(l.mediaType).toBe(MediaType.OciLayerZstd);
    expect(l.diffID).toBe(sha256Of(tar));
    const path = store.content.path(l.digest);
    expect(l.digest).toBe(sha256Of(await readFile(path)));
    expect((await decompressWith('zstd', path)).equals(tar)).toBe(true);
    const layer = storedLayer(store.content, { mediaType: l.mediaType, digest: l.digest, size: l.size }, l.diffID);
    expect((await buffer(await layer.uncompressed())).equals(tar)).toBe(true);
  });

  it('none: the blob is the tar itself', async () => {
    const tar = fakeTar(1 << 20);
    const l = await ingestLayer(store.content, pieces(tar), { compression: 'none' });
    expect(l).toEqual({ digest: sha256Of(tar), size: tar.length, diffID: sha256Of(tar), mediaType: MediaType.OciLayer });
  });

  it('an empty tar stream still gives valid gzip and zstd blobs', async () => {
    const gz = await ingestLayer(store.content, Readable.from([]));
    expect(gunzipSync(await readFile(store.content.path(gz.digest))).length).toBe(0);
    const zs = await ingestLayer(store.content, Readable.from([]), { compression: 'zstd' });
    expect((await decompressWith('zstd', store.content.path(zs.digest))).length).toBe(0);
    expect(gz.diffID).toBe(zs.diffID);
  });

  it('gzip layers read back through Layer.uncompressed(); an unknown media type is FailedPrecondition', async () => {
    const tar = fakeTar(2 << 20);
    const l = await ingestLayer(store.content, pieces(tar));
    const layer = storedLayer(store.content, { mediaType: l.mediaType, digest: l.digest, size: l.size }, l.diffID);
    expect((await buffer(await layer.uncompressed())).equals(tar)).toBe(true);
    const odd = storedLayer(store.content, { mediaType: 'application/x-lz4', digest: l.digest, size: l.size }, l.diffID);
    await expect(odd.uncompressed()).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('a failing tar stream aborts the blob: nothing committed, nothing left in ingest/', async () => {
    let sent = 0;
    const broken = new Readable({
      read() {
        if (sent++ < 40) this.push(randomBytes(64 * 1024));
        else this.destroy(new Error('diff failed'));
      },
    });
    await expect(ingestLayer(store.content, broken)).rejects.toThrow('diff failed');
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
    const blobs: unknown[] = [];
    for await (const b of store.content.list()) blobs.push(b);
    expect(blobs).toEqual([]);
  });

  it('rejects bad options with InvalidArgumentError before opening a blob', async () => {
    await expect(ingestLayer(store.content, Readable.from([]), { level: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(ingestLayer(store.content, Readable.from([]), { compression: 'zstd', level: 30 })).rejects.toThrow(/zstd level 30/);
    await expect(ingestLayer(store.content, Readable.from([]), { compression: 'none', level: 3 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(
      ingestLayer(store.content, Readable.from([]), { compression: 'lz4' as unknown as 'gzip' }),
    ).rejects.toThrow(/unknown layer compression "lz4"/);
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });
});
