import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLossError, UnavailableError, parseReference, type Descriptor } from '@tsbuild/oci';
import { Store } from '@tsbuild/store';
import { RegistryClient, pull, push } from '../src/index.js';
import { FILES, makeImage } from './image-fixture.js';
import { randomBlob, startFaultProxy, startRegistry, tempDir, type FaultProxy, type RunningRegistry } from './registry-server.js';

let reg: RunningRegistry;
let proxy: FaultProxy;
let dir: string;
let source: Store;
let image: Descriptor;
const big: [string, 'file', number, Buffer] = ['big.bin', 'file', 0o644, randomBytes(3 << 20)];

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg);
  dir = await tempDir('tsbuild-faults-');
  source = await Store.open(join(dir, 'source'));
  image = await makeImage(source, { files: [FILES, [big]], name: 'faults/src:v1' });
  const c = new RegistryClient();
  await push(c, source, image, parseReference(`${reg.host}/faults/img:v1`));
  await c.close();
});
afterAll(async () => {
  await proxy.stop();
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

async function freshStore(name: string): Promise<Store> {
  return Store.open(join(dir, name));
}

const layerGets = () => proxy.log.filter((l) => l.method === 'GET' && l.path.includes('/blobs/sha256:'));

describe('faults between client and registry', () => {
  it('resumes a blob download cut mid-way with a Range request', async () => {
    const store = await freshStore('drop');
    const bigLayer = (await source.image(image).manifest()).layers[1]!.digest;
    let dropped = false;
    proxy.log.length = 0;
    proxy.plan = (req) => {
      if (req.method === 'GET' && req.url?.includes(bigLayer) && !dropped) {
        dropped = true;
        return { kind: 'drop-response', after: 100_000 };
      }
      return { kind: 'pass' };
    };
    const c = new RegistryClient({ backoffMs: 10 });
    const { descriptor } = await pull(c, store, parseReference(`${proxy.host}/faults/img:v1`));
    expect(descriptor.digest).toBe(image.digest);
    expect(proxy.log.some((l) => l.range === 'bytes=100000-')).toBe(true);
    expect((await store.fsck()).problems).toEqual([]);
    await c.close();
  });

  it('retries 500s, then succeeds', async () => {
    const store = await freshStore('500');
    let failures = 0;
    proxy.plan = (req) => (req.url?.includes('/manifests/') && failures++ < 2 ? { kind: 'status', status: 500 } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 10 });
    const { descriptor } = await pull(c, store, parseReference(`${proxy.host}/faults/img:v1`));
    expect(descriptor.digest).toBe(image.digest);
    expect(failures).toBeGreaterThanOrEqual(3);
    await c.close();
  });

  it('honours Retry-After on 429', async () => {
    let n = 0;
    proxy.plan = (req) => (req.url?.includes('/manifests/') && n++ === 0 ? { kind: 'status', status: 429, headers: { 'retry-after': '1' } } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 10 });
    const t0 = Date.now();
    await c.resolve(parseReference(`${proxy.host}/faults/img:v1`));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    await c.close();
  });

  it('gives up on persistent 500s with a one-line UnavailableError', async () => {
    proxy.plan = (req) => (req.url?.includes('/manifests/') ? { kind: 'status', status: 503 } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 5, retries: 2 });
    const e = await c.resolve(parseReference(`${proxy.host}/faults/img:v1`)).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/503/);
    await c.close();
  });

  it('a wrong blob fails the pull with DataLossError and stores nothing of it, nor a name', async () => {
    const store = await freshStore('corrupt');
    proxy.plan = (req) => (req.method === 'GET' && req.url?.includes('/blobs/') ? { kind: 'corrupt' } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 5 });
    await expect(pull(c, store, parseReference(`${proxy.host}/faults/img:v1`))).rejects.toBeInstanceOf(DataLossError);
    expect(await store.listImages()).toEqual([]);
    const m = await store.image(image).manifest().catch(() => undefined);
    expect(m).toBeUndefined();
    expect(await readdir(join(dir, 'corrupt', 'blobs', 'sha256'))).toEqual([]);
    expect(await readdir(join(dir, 'corrupt', 'ingest'))).toEqual([]);
    await c.close();
  });

  it('an interrupted pull resumes from the blobs it verified, leaving no partial image meanwhile', async () => {
    const store = await freshStore('resume');
    const sourceManifest = await source.image(image).manifest();
    const bigLayer = sourceManifest.layers[1]!.digest;
    proxy.plan = (req) => (req.url?.includes(bigLayer) ? { kind: 'drop-response', after: 10 } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 5, retries: 0 });
    await expect(pull(c, store, parseReference(`${proxy.host}/faults/img:v1`))).rejects.toBeInstanceOf(UnavailableError);
    expect(await store.listImages()).toEqual([]);
    proxy.plan = () => ({ kind: 'pass' });
    proxy.log.length = 0;
    await pull(c, store, parseReference(`${proxy.host}/faults/img:v1`));
    // Only the blob that failed is fetched again.
    expect(layerGets().map((l) => l.path.slice(l.path.indexOf('sha256:')))).toEqual([bigLayer]);
    expect((await store.listImages()).map((r) => r.name)).toEqual([`${proxy.host}/faults/img:v1`]);
    await c.close();
  });

  it('fails a stalled response after timeoutMs instead of hanging', async () => {
    proxy.plan = (req) => (req.method === 'GET' && req.url?.includes('/blobs/') ? { kind: 'stall', after: 1000 } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 5, retries: 1, timeoutMs: 500 });
    const m = await source.image(image).manifest();
    const t0 = Date.now();
    const e = await buffer(await c.getBlob(parseReference(`${proxy.host}/faults/img`), m.layers[1]!)).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/after \d+ of \d+ bytes \(2 attempts\)/);
    expect(Date.now() - t0).toBeLessThan(5000);
    proxy.plan = () => ({ kind: 'pass' });
    await c.close();
  });

  it('recovers a monolithic upload cut mid-PUT: a new session, then PATCH from there on', async () => {
    const { data, d } = randomBlob((3 << 20) + 555);
    let puts = 0;
    proxy.log.length = 0;
    proxy.plan = (req) => (req.method === 'PUT' && ++puts === 1 ? { kind: 'drop-request', after: 300_000 } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 5 });
    expect(await c.putBlob(parseReference(`${proxy.host}/faults/mono`), d, () => Readable.from([data]))).toBe('uploaded');
    // docker-registry 2.8 forgets a session whose PUT was cut (the GET of its status is a 404),
    // so the retry opens a new one; it goes by PATCH, which a registry that keeps partial
    // uploads could resume.
    expect(proxy.log.map((l) => l.method)).toEqual(['GET', 'HEAD', 'POST', 'PUT', 'GET', 'POST', 'PATCH', 'PUT']);
    expect((await buffer(await c.getBlob(parseReference(`${reg.host}/faults/mono`), d))).equals(data)).toBe(true);
    proxy.plan = () => ({ kind: 'pass' });
    await c.close();
  });

  it('recovers a chunked upload cut mid-PATCH: queries the session, then restarts the session the registry dropped', async () => {
    const { data, d } = randomBlob((3 << 20) + 777);
    let patches = 0;
    proxy.log.length = 0;
    proxy.plan = (req) => (req.method === 'PATCH' && ++patches === 2 ? { kind: 'drop-request', after: 300_000 } : { kind: 'pass' });
    const c = new RegistryClient({ backoffMs: 5, chunkSize: 1 << 20 });
    expect(await c.putBlob(parseReference(`${proxy.host}/faults/upload`), d, () => Readable.from([data]))).toBe('uploaded');
    const methods = proxy.log.map((l) => l.method);
    // PATCH 1 lands, PATCH 2 is cut; the client asks the session's status (GET on its
    // Location). docker-registry 2.8 binds a session to the offset in its `_state` token and
    // refuses it once a partial PATCH moved the file on (BLOB_UPLOAD_INVALID), so the upload
    // starts over with a new session and completes; the registry's PUT verifies the digest.
    expect(methods).toEqual(['GET', 'HEAD', 'POST', 'PATCH', 'PATCH', 'GET', 'POST', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PUT']);
    expect(methods.at(-1)).toBe('PUT');
    expect((await buffer(await c.getBlob(parseReference(`${reg.host}/faults/upload`), d))).equals(data)).toBe(true);
    proxy.plan = () => ({ kind: 'pass' });
    await c.close();
  });
});
