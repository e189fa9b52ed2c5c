import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataLossError, NotFoundError, sha256Of } from '@tsbuild/oci';
import { FileContentStore } from './content-store.js';

let root: string;
let cs: FileContentStore;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'store-cs-'));
  cs = new FileContentStore(root);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('blob writer', () => {
  it('streams, verifies and commits a blob that then reads back', async () => {
    const w = await cs.write({ expected: sha256Of('hello world'), size: 11 });
    await pipeline(Readable.from([Buffer.from('hello '), Buffer.from('world')]), w);
    expect(await w.commit()).toEqual({ digest: sha256Of('hello world'), size: 11 });
    expect(await text(await cs.read(sha256Of('hello world')))).toBe('hello world');
    expect(await cs.info(sha256Of('hello world'))).toEqual({ digest: sha256Of('hello world'), size: 11 });
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });

  it('commits a blob large enough for background writeback (fdatasync every 8 MiB) intact', async () => {
    const chunks = Array.from({ length: 40 }, (_, i) => Buffer.alloc(512 * 1024, i));
    const all = Buffer.concat(chunks);
    const w = await cs.write({ expected: sha256Of(all), size: all.length });
    await pipeline(Readable.from(chunks), w);
    expect(await w.commit()).toEqual({ digest: sha256Of(all), size: all.length });
    const back: Buffer[] = [];
    for await (const c of await cs.read(sha256Of(all))) back.push(c as Buffer);
    expect(Buffer.concat(back).equals(all)).toBe(true);
  });

  it('rejects a mismatched digest, and the blob is never visible', async () => {
    const claimed = sha256Of('something else');
    const w = await cs.write({ expected: claimed });
    w.end(Buffer.from('actual bytes'));
    const err = await w.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataLossError);
    expect((err as Error).message).toContain(claimed);
    expect((err as Error).message).toContain(sha256Of('actual bytes'));
    expect(await cs.info(claimed)).toBeUndefined();
    expect(await cs.info(sha256Of('actual bytes'))).toBeUndefined();
    await expect(cs.read(claimed)).rejects.toBeInstanceOf(NotFoundError);
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
    const listed = [];
    for await (const b of cs.list()) listed.push(b);
    expect(listed).toEqual([]);
  });

  it('rejects a blob shorter than the expected size', async () => {
    const w = await cs.write({ size: 10 });
    w.end(Buffer.from('short'));
    await expect(w.commit()).rejects.toThrow(/expected 10 bytes, got 5/);
    expect(await cs.info(sha256Of('short'))).toBeUndefined();
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });

  it('fails a write as soon as it exceeds the expected size', async () => {
    const w = await cs.write({ size: 3 });
    await expect(pipeline(Readable.from([Buffer.from('too long')]), w)).rejects.toBeInstanceOf(DataLossError);
    await expect(w.commit()).rejects.toBeInstanceOf(DataLossError);
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });

  it('commits the same content twice idempotently', async () => {
    const a = await cs.writeBuffer(Buffer.from('same'), sha256Of('same'));
    const b = await cs.writeBuffer(Buffer.from('same'));
    expect(a).toEqual(b);
    expect(await text(await cs.read(a.digest))).toBe('same');
    expect(await readdir(join(root, 'blobs', 'sha256'))).toHaveLength(1);
  });

  it('abort removes the temp file', async () => {
    const w = await cs.write();
    w.write(Buffer.from('partial'));
    await w.abort();
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });

  it('readBuffer reads a small blob whole; an absent one is NotFound', async () => {
    const a = await cs.writeBuffer(Buffer.from('{"schemaVersion":2}'));
    expect((await cs.readBuffer(a.digest)).toString()).toBe('{"schemaVersion":2}');
    await expect(cs.readBuffer(sha256Of('absent'))).rejects.toBeInstanceOf(NotFoundError);
  });

  it('lists and deletes blobs; deleting an absent blob is NotFound', async () => {
    const a = await cs.writeBuffer(Buffer.from('a'));
    const b = await cs.writeBuffer(Buffer.from('bb'));
    const listed = [];
    for await (const x of cs.list()) listed.push(x);
    expect(listed.sort((x, y) => x.size - y.size)).toEqual([a, b]);
    await cs.delete(a.digest);
    expect(await cs.info(a.digest)).toBeUndefined();
    await expect(cs.delete(a.digest)).rejects.toBeInstanceOf(NotFoundError);
  });
});
