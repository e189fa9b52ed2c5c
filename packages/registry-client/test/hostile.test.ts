import { rm } from 'node:fs/promises';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DataLossError, UnavailableError, isTsbuildError, parseReference, type Descriptor } from '@tsbuild/oci';
import { Store } from '@tsbuild/store';
import { RegistryClient, pull, staticAuthProvider, type RegistryClientOptions } from '../src/index.js';
import { fakeImage, serveImage, stallingManifest, startServer, stream, type FakeImage, type TestServer } from './hostile-registry.js';
import { tempDir } from './registry-server.js';

/**
 * tsbuild against registries that misbehave on purpose (issue 14): credentials must go to the
 * host they were given for only, every body read into memory is capped, every request ends, and
 * every failure is one line.
 */

let reg: TestServer;
/** Stands for another host: a different address (and origin) than the registry. */
let other: TestServer;
let dir: string;
const clients: RegistryClient[] = [];
const CREDS = { username: 'alice', password: 's3cret-pa55word' };
const BASIC = `Basic ${Buffer.from(`${CREDS.username}:${CREDS.password}`).toString('base64')}`;

beforeAll(async () => {
  reg = await startServer('127.0.0.1');
  other = await startServer('127.0.0.2');
  dir = await tempDir('tsbuild-hostile-');
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  reg.log.length = 0;
  other.log.length = 0;
  reg.handle = (_q, res) => res.writeHead(404).end();
  other.handle = (_q, res) => res.writeHead(404).end();
});
afterAll(async () => {
  await reg.stop();
  await other.stop();
  await rm(dir, { recursive: true, force: true });
});

function client(opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ retries: 0, backoffMs: 5, ...opts });
  clients.push(c);
  return c;
}

let stores = 0;
async function store(): Promise<Store> {
  return Store.open(join(dir, `store-${stores++}`));
}

/** A TsbuildError with a one-line message (what a CLI user sees), returned for more checks. */
async function oneLineError(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => {
      throw new Error('expected a failure');
    },
    (x: unknown) => x as Error,
  );
  expect(isTsbuildError(e), `not a TsbuildError: ${e.stack}`).toBe(true);
  expect(e.message).not.toMatch(/[\n\r]/);
  expect(e.message.length).toBeLessThan(400);
  return e;
}

const ref = (path = 'evil/img:v1') => parseReference(`${reg.host}/${path}`);

function noCredentialsAt(s: TestServer): void {
  for (const r of s.log) {
    expect(r.authorization).toBeUndefined();
    expect(r.body).not.toContain(CREDS.password);
    expect(r.url).not.toContain(CREDS.password);
  }
}

describe('credentials go only to the host they were given for', () => {
  it('a token realm answering 302 to another host sends no Basic credentials there', async () => {
    const img = fakeImage();
    reg.handle = (req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(302, { location: `${other.url}/token${req.url.slice('/token'.length)}` }).end();
        return;
      }
      if (!serveImage(img, req, res, { bearer: { realm: `${reg.url}/token` } })) res.writeHead(404).end();
    };
    other.handle = (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'from-elsewhere' }));
    const c = client({ auth: staticAuthProvider(CREDS) });
    await c.getManifest(ref()).catch(() => undefined);
    // The realm itself, named by the registry, got them (as docker sends them).
    expect(reg.log.some((r) => r.url.startsWith('/token') && r.authorization === BASIC)).toBe(true);
    expect(other.log.length).toBeGreaterThan(0);
    noCredentialsAt(other);
  });

  it('a token realm on another host, named by the registry itself, gets them (what docker does)', async () => {
    const img = fakeImage();
    reg.handle = (req, res) => {
      if (!serveImage(img, req, res, { bearer: { realm: `${other.url}/token` } })) res.writeHead(404).end();
    };
    other.handle = (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 't' }));
    const c = client({ auth: staticAuthProvider(CREDS) });
    const m = await c.getManifest(ref());
    expect(m.descriptor.digest).toBe(img.manifestDigest);
    expect(other.log.map((r) => r.authorization)).toEqual([BASIC]);
  });

  it('an identity token in a POST body is not re-sent where a token realm redirects it (307) to another host', async () => {
    const img = fakeImage();
    const secret = 'identity-token-s3cret';
    reg.handle = (req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(307, { location: `${other.url}/token` }).end();
        return;
      }
      if (!serveImage(img, req, res, { bearer: { realm: `${reg.url}/token` } })) res.writeHead(404).end();
    };
    other.handle = (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 't' }));
    const c = client({ auth: staticAuthProvider({ identityToken: secret }) });
    const e = await oneLineError(c.getManifest(ref()));
    expect(e.message).toMatch(/redirect/);
    expect(e.message).not.toContain(secret);
    expect(reg.log.some((r) => r.method === 'POST' && r.body.includes(secret))).toBe(true);
    for (const r of other.log) expect(r.body).not.toContain(secret);
  });

  it('blob and manifest GETs redirected (302, 307) to another host or port carry no Authorization', async () => {
    const img = fakeImage();
    const third = await startServer('127.0.0.1');
    try {
      reg.handle = (req, res) => {
        if (req.headers.authorization !== BASIC) {
          res.writeHead(401, { 'www-authenticate': 'Basic realm="r"', 'docker-distribution-api-version': 'registry/2.0' }).end();
          return;
        }
        if (req.url?.includes('/manifests/')) {
          res.writeHead(302, { location: `${third.url}/m` }).end();
          return;
        }
        if (req.url?.includes('/blobs/')) {
          res.writeHead(307, { location: `${other.url}/storage${req.url}?X-Amz-Signature=abc` }).end();
          return;
        }
        serveImage(img, req, res);
      };
      third.handle = (_q, res) => res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(img.manifest);
      other.handle = (req, res) => {
        if (!serveImage(img, { ...req, url: req.url?.replace(/^\/storage/, '').replace(/\?.*/, '') } as typeof req, res)) res.writeHead(404).end();
      };
      const c = client({ auth: staticAuthProvider(CREDS) });
      const s = await store();
      const { descriptor } = await pull(c, s, ref());
      expect(descriptor.digest).toBe(img.manifestDigest);
      expect(other.log.length).toBe(2);
      expect(third.log.length).toBe(1);
      noCredentialsAt(other);
      noCredentialsAt(third);
    } finally {
      await third.stop();
    }
  });

  it('a registry error message never carries the credentials, even when the server echoes them', async () => {
    reg.handle = (req, res) => {
      if (req.url === '/v2/') {
        if (req.headers.authorization === undefined) {
          res.writeHead(401, { 'www-authenticate': `Bearer realm="${reg.url}/token",service="s"`, 'docker-distribution-api-version': 'registry/2.0' }).end();
          return;
        }
      }
      if (req.url?.startsWith('/token')) {
        const echo = `${req.headers.authorization ?? ''} ${Buffer.from((req.headers.authorization ?? '').slice(6), 'base64').toString()}`;
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'DENIED', message: `you sent ${echo}` }] }));
        return;
      }
      res.writeHead(404).end();
    };
    const c = client({ auth: staticAuthProvider(CREDS) });
    const e = await oneLineError(c.ping(reg.host));
    expect(e.message).toMatch(/DENIED/);
    expect(e.message).not.toContain(CREDS.password);
    expect(e.message).not.toContain(BASIC.slice(6));
  });
});

describe('bodies read into memory are capped', () => {
  /** Peak RSS growth (bytes) while `p` runs, sampled every 20 ms. */
  async function rssGrowth<T>(p: () => Promise<T>): Promise<{ growth: number; result: T | Error }> {
    const start = process.memoryUsage.rss();
    let peak = start;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
    const result = await p().catch((e: unknown) => e as Error);
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage.rss());
    return { growth: peak - start, result };
  }

  it('an endless token response fails after 1 MiB, naming the URL and the cap, in bounded memory', async () => {
    let served: () => number = () => 0;
    reg.handle = (req, res) => {
      if (req.url?.startsWith('/token')) {
        // "Endless": 512 MiB, more than this test would ever hold, at full speed.
        served = stream(res, { chunk: Buffer.alloc(64 << 10, 0x41), everyMs: 0, maxBytes: 512 << 20 }).written;
        return;
      }
      if (!serveImage(fakeImage(), req, res, { bearer: { realm: `${reg.url}/token` } })) res.writeHead(404).end();
    };
    const c = client({ auth: staticAuthProvider(CREDS) });
    const { growth, result } = await rssGrowth(() => c.getManifest(ref()));
    const e = await oneLineError(Promise.reject(result));
    expect(e.message).toContain(`${reg.url}/token`);
    expect(e.message).toMatch(/1 MiB/);
    expect(growth).toBeLessThan(64 << 20);
    expect(served()).toBeLessThan(64 << 20);
  });

  it('an endless manifest without Content-Length fails after 4 MiB, naming the URL and the cap', async () => {
    reg.handle = (req, res) => {
      if (req.url?.includes('/manifests/')) {
        stream(res, { headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, chunk: Buffer.alloc(64 << 10, 0x20), everyMs: 0, maxBytes: 512 << 20 });
        return;
      }
      if (!serveImage(fakeImage(), req, res)) res.writeHead(404).end();
    };
    const e = await oneLineError(client().getManifest(ref()));
    expect(e.message).toContain(`${reg.url}/v2/evil/img/manifests/v1`);
    expect(e.message).toMatch(/4 MiB/);
  });

  it('an endless tag list fails naming the URL and the cap instead of "not JSON"', async () => {
    reg.handle = (req, res) => {
      if (req.url?.includes('/tags/list')) {
        stream(res, { chunk: Buffer.alloc(64 << 10, 0x20), everyMs: 0, maxBytes: 512 << 20 });
        return;
      }
      if (!serveImage(fakeImage(), req, res)) res.writeHead(404).end();
    };
    const e = await oneLineError(client().listTags(ref('evil/img')));
    expect(e.message).toContain(`${reg.url}/v2/evil/img/tags/list`);
    expect(e.message).toMatch(/\d+ MiB/);
  });

  it('a config bigger than the config cap is refused before it is fetched, and nothing is named', async () => {
    const img = fakeImage({ configSize: 64 << 20 });
    reg.handle = (req, res) => {
      if (!serveImage(img, req, res)) res.writeHead(404).end();
    };
    const s = await store();
    const e = await oneLineError(pull(client(), s, ref()));
    expect(e.message).toContain(img.configDigest);
    expect(e.message).toMatch(/8 MiB/);
    expect(reg.log.some((r) => r.url.includes(img.configDigest))).toBe(false);
    expect(await s.listImages()).toEqual([]);
  });
});

describe('every request ends', () => {
  it('a manifest dripped one byte at a time fails at the deadline with one line, though bytes keep coming', async () => {
    reg.handle = (req, res) => {
      if (req.url?.includes('/manifests/')) {
        stream(res, { headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, chunk: Buffer.from(' '), everyMs: 50, maxBytes: 10_000 });
        return;
      }
      if (!serveImage(fakeImage(), req, res)) res.writeHead(404).end();
    };
    const t0 = Date.now();
    const e = await oneLineError(pull(client({ timeoutMs: 500, deadlineMs: 1500 }), await store(), ref()));
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toContain(`${reg.url}/v2/evil/img/manifests/v1`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a dripped token response fails at the deadline', async () => {
    reg.handle = (req, res) => {
      if (req.url?.startsWith('/token')) {
        stream(res, { chunk: Buffer.from(' '), everyMs: 50, maxBytes: 10_000 });
        return;
      }
      if (!serveImage(fakeImage(), req, res, { bearer: { realm: `${reg.url}/token` } })) res.writeHead(404).end();
    };
    const t0 = Date.now();
    const e = await oneLineError(client({ timeoutMs: 500, deadlineMs: 1000 }).getManifest(ref()));
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toContain(`${reg.url}/token`);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('response headers dripped one byte at a time fail at the deadline', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const drip: NetServer = createNetServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      const head = Buffer.from(`HTTP/1.1 200 OK\r\nDocker-Distribution-Api-Version: registry/2.0\r\n${'X-Pad: a\r\n'.repeat(1000)}`);
      let i = 0;
      const t = setInterval(() => {
        if (sock.destroyed || i >= head.length) {
          clearInterval(t);
          return;
        }
        sock.write(head.subarray(i, ++i));
      }, 50);
      sock.on('close', () => clearInterval(t));
    });
    await new Promise<void>((r) => drip.listen(0, '127.0.0.1', r));
    try {
      const host = `127.0.0.1:${(drip.address() as { port: number }).port}`;
      const t0 = Date.now();
      const e = await oneLineError(client({ timeoutMs: 500, deadlineMs: 1000 }).getManifest(parseReference(`${host}/evil/img:v1`)));
      expect(e).toBeInstanceOf(UnavailableError);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => drip.close(r));
    }
  });

  it('a blob dripped below the minimum throughput fails, though no single gap reaches the stall timeout', async () => {
    const img = fakeImage();
    reg.handle = (req, res) => {
      if (req.url?.endsWith(img.layerDigest)) {
        stream(res, { headers: { 'content-length': String(img.layer.length) }, chunk: img.layer.subarray(0, 10), everyMs: 50, maxBytes: img.layer.length });
        return;
      }
      if (!serveImage(img, req, res)) res.writeHead(404).end();
    };
    const c = client({ timeoutMs: 500, minBytesPerSecond: 4096 });
    const d: Descriptor = { mediaType: 'application/octet-stream', digest: img.layerDigest, size: img.layer.length };
    const t0 = Date.now();
    const e = await oneLineError(c.getBlob(ref('evil/img'), d).then((s) => buffer(s)));
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/bytes\/s|B\/s/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('one line for every failure', () => {
  for (const target of ['file:///etc/passwd', 'ftp://127.0.0.2/blob', 'gopher://127.0.0.2/x']) {
    it(`a blob redirect to ${target.split(':')[0]}: is refused with one line naming the URL`, async () => {
      const img = fakeImage();
      reg.handle = (req, res) => {
        if (req.url?.includes('/blobs/')) {
          res.writeHead(307, { location: target }).end();
          return;
        }
        if (!serveImage(img, req, res)) res.writeHead(404).end();
      };
      const s = await store();
      const e = await oneLineError(pull(client(), s, ref()));
      expect(e.message).toContain(target.split('/')[0]);
      expect(e.message).toContain(`${reg.url}/v2/evil/img/blobs/`);
      expect(await s.listImages()).toEqual([]);
    });
  }

  it('a manifest body that stalls is a one-line UnavailableError naming the URL', async () => {
    reg.handle = stallingManifest;
    const e = await oneLineError(client({ timeoutMs: 300 }).getManifest(ref()));
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toContain(`${reg.url}/v2/evil/img/manifests/v1`);
    expect(e.message).toMatch(/no progress for 300 ms/);
  });

  it("a registry's error message with newlines and terminal escapes is printed on one line without control characters", async () => {
    reg.handle = (req, res) => {
      if (req.url?.includes('/manifests/')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'line one\nline two\u001b[2J\u001b]0;pwned\u0007\r' }] }));
        return;
      }
      if (!serveImage(fakeImage(), req, res)) res.writeHead(404).end();
    };
    const e = await oneLineError(client().getManifest(ref()));
    expect(e.message).not.toMatch(/[\u0000-\u001f\u007f]/);
    expect(e.message).toMatch(/line one line two/);
  });
});

describe('nothing unreadable is pulled into the store', () => {
  async function pulledNothing(img: FakeImage, match: RegExp): Promise<Error> {
    reg.handle = (req, res) => {
      if (!serveImage(img, req, res)) res.writeHead(404).end();
    };
    const s = await store();
    const e = await oneLineError(pull(client(), s, ref()));
    expect(e).toBeInstanceOf(DataLossError);
    expect(e.message).toMatch(match);
    // Named by registry and repository.
    expect(e.message).toContain(`${reg.host}/evil/img`);
    expect(await s.listImages()).toEqual([]);
    return e;
  }

  it('a config that is not JSON is refused, naming registry, repository and digest; nothing is named', async () => {
    const img = fakeImage({ config: Buffer.from('\u0000\u0001 this is not JSON') });
    const e = await pulledNothing(img, /config .*not (valid )?JSON/);
    expect(e.message).toContain(img.configDigest);
  });

  it('a config that is JSON but not an object is refused', async () => {
    const img = fakeImage({ config: Buffer.from('[1,2,3]') });
    await pulledNothing(img, /config/);
  });

  it('a manifest that is not JSON is refused, naming its digest', async () => {
    const img = fakeImage({ manifest: () => Buffer.from('<html>not a manifest</html>') });
    const e = await pulledNothing(img, /not (valid )?JSON/);
    expect(e.message).toContain(img.manifestDigest);
  });

  it('a manifest that is JSON null is refused with one line', async () => {
    const img = fakeImage({ manifest: () => null });
    await pulledNothing(img, /manifest/);
  });

  it('a manifest without a layers array is refused, naming its digest', async () => {
    const img = fakeImage({ manifest: (m) => ({ ...m, layers: undefined }) });
    const e = await pulledNothing(img, /layers/);
    expect(e.message).toContain(img.manifestDigest);
  });

  it('a manifest whose layer descriptor has a bad digest or size is refused', async () => {
    for (const layer of [{ digest: '../../../etc/passwd', size: 10 }, { digest: `sha256:${'a'.repeat(64)}`, size: -1 }, { digest: `sha256:${'a'.repeat(64)}`, size: 'x' }]) {
      const img = fakeImage({ manifest: (m) => ({ ...m, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }] }) });
      await pulledNothing(img, /layer/);
    }
  });
});
