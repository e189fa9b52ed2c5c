import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLossError, InvalidArgumentError, MediaType, NotFoundError, parseReference, type Descriptor, type Digest } from '@tsbuild/oci';
import { RegistryClient, registryErrorInfo, type ProgressEvent } from '../src/index.js';
import { randomBlob, startFaultProxy, startRegistry, type FaultProxy, type RunningRegistry } from './registry-server.js';

let reg: RunningRegistry;
let proxy: FaultProxy;
let client: RegistryClient;

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg);
  client = new RegistryClient({ backoffMs: 10 });
});
afterAll(async () => {
  await client.close();
  await proxy.stop();
  await reg.stop();
});


async function pushSmallImage(repo: string, tag: string): Promise<{ manifest: Descriptor; body: Buffer; layer: { data: Buffer; d: Descriptor } }> {
  const ref = parseReference(`${reg.host}/${repo}:${tag}`);
  const layer = randomBlob(2000);
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.d.digest] } }));
  const cfgD: Descriptor = { mediaType: MediaType.OciConfig, digest: `sha256:${createHash('sha256').update(cfg).digest('hex')}` as Digest, size: cfg.length };
  await client.putBlob(ref, layer.d, () => Readable.from([layer.data]));
  await client.putBlob(ref, cfgD, () => Readable.from([cfg]));
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: cfgD, layers: [{ ...layer.d, mediaType: MediaType.OciLayer }] }));
  const manifest = await client.putManifest(ref, body, MediaType.OciManifest);
  return { manifest, body, layer };
}

describe('distribution API against docker-registry 2.8', () => {
  it('pings /v2/', async () => {
    await client.ping(reg.host);
  });

  it('puts a manifest by tag, then HEADs and GETs it by tag and by digest, and deletes it', async () => {
    const { manifest, body } = await pushSmallImage('api/manifests', 'v1');
    expect(manifest.digest).toBe(`sha256:${createHash('sha256').update(body).digest('hex')}`);
    const byTag = parseReference(`${reg.host}/api/manifests:v1`);
    expect(await client.resolve(byTag)).toEqual(manifest);
    const got = await client.getManifest(byTag);
    expect(got.body.equals(body)).toBe(true);
    expect(got.descriptor).toEqual(manifest);
    const byDigest = parseReference(`${reg.host}/api/manifests@${manifest.digest}`);
    expect((await client.getManifest(byDigest)).descriptor.digest).toBe(manifest.digest);
    expect((await client.resolve(byDigest)).digest).toBe(manifest.digest);
    await client.deleteManifest(byTag);
    const e = await client.getManifest(byDigest).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
    expect(registryErrorInfo(e)?.registryCode).toBe('MANIFEST_UNKNOWN');
    expect(String((e as Error).message)).toMatch(/404 MANIFEST_UNKNOWN/);
  });

  it('reports MANIFEST_UNKNOWN for a missing tag and BLOB_UNKNOWN for a missing blob, in one line', async () => {
    await pushSmallImage('api/errors', 'v1');
    const e1 = await client.resolve(parseReference(`${reg.host}/api/errors:nope`)).catch((x: unknown) => x as Error);
    expect(e1).toBeInstanceOf(NotFoundError);
    expect(e1.message).toMatch(/^manifest 127\.0\.0\.1:\d+\/api\/errors:nope: 404 MANIFEST_UNKNOWN: manifest unknown$/);
    const e2 = await client.getBlob(parseReference(`${reg.host}/api/errors`), randomBlob(10).d).catch((x: unknown) => x as Error);
    expect(e2).toBeInstanceOf(NotFoundError);
    expect(e2.message).toMatch(/404 BLOB_UNKNOWN/);
    expect(e2.message).not.toContain('\n');
  });

  it('refuses a manifest push whose blobs the registry lacks, quoting the registry', async () => {
    const ref = parseReference(`${reg.host}/api/invalid:v1`);
    const missing = randomBlob(10).d;
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: { ...missing, mediaType: MediaType.OciConfig }, layers: [] }));
    const e = await client.putManifest(ref, body, MediaType.OciManifest).catch((x: unknown) => x as Error);
    expect(registryErrorInfo(e)?.registryCode).toBe('MANIFEST_BLOB_UNKNOWN');
    expect(e.message).toMatch(/MANIFEST_BLOB_UNKNOWN/);
  });

  it('uploads blobs small and big in one PUT after the POST (monolithic), and verifies downloads', async () => {
    const repo = parseReference(`${reg.host}/api/blobs`);
    const preg = parseReference(`${proxy.host}/api/blobs`);
    const small = randomBlob(1000);
    const big = randomBlob(3 << 20);
    proxy.log.length = 0;
    const events: ProgressEvent[] = [];
    expect(await client.putBlob(preg, small.d, () => Readable.from([small.data]))).toBe('uploaded');
    expect(proxy.log.map((l) => l.method)).toEqual(['GET', 'HEAD', 'POST', 'PUT']);
    proxy.log.length = 0;
    expect(await client.putBlob(preg, big.d, () => Readable.from([big.data]), { onProgress: (e) => events.push(e) })).toBe('uploaded');
    expect(proxy.log.map((l) => l.method)).toEqual(['HEAD', 'POST', 'PUT']);
    expect(events.at(-1)).toEqual({ digest: big.d.digest, phase: 'uploading', current: big.d.size, total: big.d.size });
    expect(await client.blobExists(repo, big.d)).toBe(true);
    expect(await client.putBlob(repo, big.d, () => Readable.from([big.data]))).toBe('exists');
    expect((await buffer(await client.getBlob(repo, big.d))).equals(big.data)).toBe(true);
  });

  it('prepareUpload opens a session ahead; a big blob takes it after its HEAD, and close() cancels one left unused', async () => {
    const c = new RegistryClient({ backoffMs: 10 });
    const big = randomBlob(2 << 20);
    const small = randomBlob(100);
    proxy.log.length = 0;
    c.prepareUpload(parseReference(`${proxy.host}/api/spare`));
    expect(await c.putBlob(parseReference(`${proxy.host}/api/spare`), small.d, () => Readable.from([small.data]))).toBe('uploaded');
    expect(await c.putBlob(parseReference(`${proxy.host}/api/spare`), big.d, () => Readable.from([big.data]))).toBe('uploaded');
    // ping, the spare POST; the small blob opens its own session; the big one goes straight to its PUT
    expect(proxy.log.map((l) => l.method)).toEqual(['GET', 'POST', 'HEAD', 'POST', 'PUT', 'HEAD', 'PUT']);
    proxy.log.length = 0;
    c.prepareUpload(parseReference(`${proxy.host}/api/unused`));
    await c.close();
    expect(proxy.log.map((l) => l.method)).toEqual(['POST', 'DELETE']);
    // cancelPreparedUpload sends the DELETE at once, without close(); close() then waits for it only.
    const c2 = new RegistryClient({ backoffMs: 10 });
    const unused = parseReference(`${proxy.host}/api/unused2`);
    c2.prepareUpload(unused);
    proxy.log.length = 0;
    c2.cancelPreparedUpload(unused);
    for (let i = 0; i < 100 && !proxy.log.some((l) => l.method === 'DELETE'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(proxy.log.map((l) => l.method)).toEqual(['GET', 'POST', 'DELETE']);
    await c2.close();
    expect(proxy.log.map((l) => l.method)).toEqual(['GET', 'POST', 'DELETE']);
    expect((await buffer(await client.getBlob(parseReference(`${reg.host}/api/spare`), big.d))).equals(big.data)).toBe(true);
  });

  it('while the scheme probe is under way, prepareUpload and checkBlobs ask at once, and the upload uses their answers', async () => {
    const c = new RegistryClient({ backoffMs: 10 });
    const repo = parseReference(`${proxy.host}/api/early`);
    const big = randomBlob(2 << 20);
    proxy.log.length = 0;
    // The probe's answer (as docker-registry gives it) comes 150 ms late.
    proxy.plan = (req) => (req.url === '/v2/' ? { kind: 'respond', status: 200, headers: { 'docker-distribution-api-version': 'registry/2.0' }, body: '{}', delayMs: 150 } : { kind: 'pass' });
    c.warmUp(proxy.host);
    c.prepareUpload(repo);
    c.checkBlobs(repo, [big.d]);
    await new Promise((r) => setTimeout(r, 75));
    expect(proxy.log.map((l) => l.method).sort()).toEqual(['GET', 'HEAD', 'POST']);
    proxy.plan = () => ({ kind: 'pass' });
    expect(await c.putBlob(repo, big.d, () => Readable.from([big.data]))).toBe('uploaded');
    // No second HEAD or POST: the blob went straight to its PUT.
    expect(proxy.log.map((l) => l.method).slice(3)).toEqual(['PUT']);
    // An answer no putBlob took is dropped by forgetChecks (push calls it as it ends): asked again later.
    const other = randomBlob(1000);
    c.checkBlobs(repo, [other.d]);
    c.forgetChecks(repo);
    proxy.log.length = 0;
    expect(await c.putBlob(repo, other.d, () => Readable.from([other.data]))).toBe('uploaded');
    expect(proxy.log.map((l) => l.method)).toEqual(['HEAD', 'HEAD', 'POST', 'PUT']);
    await c.close();
    expect((await buffer(await client.getBlob(parseReference(`${reg.host}/api/early`), big.d))).equals(big.data)).toBe(true);
  });

  it('uploads in chunks of chunkSize with Content-Range', async () => {
    const c = new RegistryClient({ chunkSize: 1 << 20, backoffMs: 10 });
    const b = randomBlob((2 << 20) + 12345);
    proxy.log.length = 0;
    expect(await c.putBlob(parseReference(`${proxy.host}/api/chunks`), b.d, () => Readable.from([b.data]))).toBe('uploaded');
    expect(proxy.log.map((l) => l.method)).toEqual(['GET', 'HEAD', 'POST', 'PATCH', 'PATCH', 'PATCH', 'PUT']);
    expect((await buffer(await client.getBlob(parseReference(`${reg.host}/api/chunks`), b.d))).equals(b.data)).toBe(true);
    await c.close();
  });

  it('mounts a blob from another repository of the registry', async () => {
    const b = randomBlob(5000);
    await client.putBlob(parseReference(`${reg.host}/api/mount-src`), b.d, () => Readable.from([b.data]));
    const r = await client.putBlob(parseReference(`${reg.host}/api/mount-dst`), b.d, () => Readable.from([]), {
      mountFrom: parseReference(`${reg.host}/api/mount-src`),
    });
    expect(r).toBe('mounted');
    expect(await client.blobExists(parseReference(`${reg.host}/api/mount-dst`), b.d)).toBe(true);
  });

  it('a blob whose bytes do not match its digest fails with DataLossError', async () => {
    const b = randomBlob(4000);
    const repo = parseReference(`${reg.host}/api/verify`);
    await client.putBlob(repo, b.d, () => Readable.from([b.data]));
    const wrong = { ...b.d, digest: `sha256:${'0'.repeat(64)}` as Digest };
    // The registry refuses an upload whose content does not hash to the digest: DIGEST_INVALID.
    const e = await client.putBlob(repo, wrong, () => Readable.from([b.data])).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(DataLossError);
    expect(e.message).toMatch(/DIGEST_INVALID/);
    const wrongSize = { ...b.d, size: 3999 };
    await expect(client.getBlob(repo, wrongSize)).rejects.toBeInstanceOf(DataLossError);
  });

  it('lists every tag', async () => {
    const names = ['a', 'b', 'c', 'd', 'e'];
    const first = await pushSmallImage('api/tags', 'a');
    for (const t of names.slice(1)) await client.putManifest(parseReference(`${reg.host}/api/tags:${t}`), first.body, MediaType.OciManifest);
    expect((await client.listTags(parseReference(`${reg.host}/api/tags`))).sort()).toEqual(names);
  });

  it('follows Link rel="next" pages of the tag list', async () => {
    // docker-registry 2.8 answers the whole list at once; the proxy splits it as paginating
    // registries (distribution 3, Harbor, GHCR) do, with a relative next link.
    proxy.plan = (req) =>
      req.url?.includes('/tags/list') && !req.url.includes('last=')
        ? { kind: 'respond', status: 200, headers: { 'content-type': 'application/json', link: '</v2/api/tags/tags/list?n=2&last=b>; rel="next"' }, body: JSON.stringify({ name: 'api/tags', tags: ['a', 'b'] }) }
        : req.url?.includes('last=b')
          ? { kind: 'respond', status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'api/tags', tags: ['c'] }) }
          : { kind: 'pass' };
    proxy.log.length = 0;
    expect(await client.listTags(parseReference(`${proxy.host}/api/tags`), { pageSize: 2 })).toEqual(['a', 'b', 'c']);
    expect(proxy.log.filter((l) => l.path.includes('/tags/list')).map((l) => l.path)).toEqual(['/v2/api/tags/tags/list?n=2', '/v2/api/tags/tags/list?n=2&last=b']);
    proxy.plan = () => ({ kind: 'pass' });
  });

  it('refuses an oversized manifest and an unsupported media type', async () => {
    const ref = parseReference(`${proxy.host}/api/limits:v1`);
    proxy.plan = (req) => (req.url?.includes('/manifests/') ? { kind: 'status', status: 200, headers: { 'content-length': String(5 << 20) } } : { kind: 'pass' });
    const e = await client.getManifest(ref).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(/over the 4 MiB manifest limit/);
    proxy.plan = () => ({ kind: 'pass' });
    await pushSmallImage('api/limits', 'v1');
    const body = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'v1', fsLayers: [] }));
    const e2 = await client.putManifest(ref, body, 'application/vnd.docker.distribution.manifest.v1+json').catch((x: unknown) => x as Error);
    expect(e2).toBeInstanceOf(InvalidArgumentError);
    expect(e2.message).toMatch(/media type application\/vnd\.docker\.distribution\.manifest\.v1\+json/);
  });
});
