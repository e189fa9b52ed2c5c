import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '@tsbuild/oci';
import { HttpTransport, isRetryableError } from '../src/http-transport.js';
import { closeServer, makePki, run, tempDir, type Pki } from './registry-server.js';

/** An HTTP server on 127.0.0.1 that counts the connections it accepted and tracks the open ones. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; host: string; server: Server; connections: Socket[] }> {
  const server = createHttpServer(handler);
  const connections: Socket[] = [];
  server.on('connection', (s: Socket) => connections.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url: `http://${host}`, host, server, connections };
}

function bytes(total: number, chunk = 1 << 20): () => Readable {
  return () =>
    Readable.from(
      (function* () {
        for (let sent = 0; sent < total; sent += chunk) yield Buffer.alloc(Math.min(chunk, total - sent), 7);
      })(),
    );
}

describe('HttpTransport over node:http', () => {
  it('keeps one connection alive across sequential requests, and close() destroys it', async () => {
    const s = await serve((req, res) => {
      req.resume();
      res.end('{"ok":true}');
    });
    const t = new HttpTransport();
    for (let i = 0; i < 3; i++) await (await t.send('GET', new URL('/v2/', s.url), {}, undefined)).body.dump();
    expect(await (await t.send('GET', new URL('/v2/', s.url), {}, undefined)).body.text()).toBe('{"ok":true}');
    await (await t.send('PUT', new URL('/v2/x', s.url), {}, Buffer.from('data'))).body.dump();
    expect(s.connections).toHaveLength(1);
    const closed = new Promise((r) => s.connections[0]!.once('close', r));
    await t.close();
    // The server sees the idle keep-alive connection go at once, not after an idle timeout.
    await expect(Promise.race([closed.then(() => 'closed'), sleep(1000).then(() => 'open')])).resolves.toBe('closed');
    await closeServer(s.server);
  });

  it('retries a connection closed before the answer ("socket hang up", ECONNRESET)', async () => {
    let n = 0;
    const s = await serve((req, res) => {
      if (n++ === 0) {
        req.socket.destroy();
        return;
      }
      res.end('second');
    });
    const t = new HttpTransport({ backoffMs: 5 });
    const r = await t.send('GET', new URL('/v2/', s.url), {}, undefined);
    expect(await r.body.text()).toBe('second');
    expect(n).toBe(2);
    await t.close();
    await closeServer(s.server);
  });

  it('fails with STALLED after timeoutMs when the server accepts the connection and never answers', async () => {
    // Reads (and ignores) the request, so it sees the client close and close() can finish.
    const silent: NetServer = createNetServer((c) => c.resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = new URL(`http://127.0.0.1:${(silent.address() as { port: number }).port}/v2/`);
    const t = new HttpTransport({ timeoutMs: 300, retries: 1, backoffMs: 5 });
    const t0 = Date.now();
    const e = await t.send('GET', url, {}, undefined).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/no progress for 300 ms.*\(after 2 attempts\)/);
    expect(isRetryableError(e)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
    await t.close();
    await new Promise((r) => silent.close(r));
  });

  it('fails an upload the server stopped reading with STALLED instead of hanging', async () => {
    const s = await serve((req) => req.pause());
    const t = new HttpTransport({ timeoutMs: 300 });
    const t0 = Date.now();
    const size = 256 << 20;
    const e = await t
      .send('PATCH', new URL('/v2/upload', s.url), { 'content-length': String(size) }, bytes(size), undefined, false)
      .catch((x: unknown) => x as Error & { code?: string });
    expect(e.code).toBe('STALLED');
    expect(Date.now() - t0).toBeLessThan(5000);
    await t.close();
    await closeServer(s.server);
  });

  it("fails an upload with its source's own error, not as a retryable connection failure", async () => {
    const s = await serve((req, res) => {
      req.resume();
      req.on('end', () => res.end());
    });
    const t = new HttpTransport({ backoffMs: 5 });
    let opened = 0;
    const body = () => {
      opened++;
      return new Readable({
        read() {
          this.destroy(Object.assign(new Error('disk gone'), { code: 'EIO' }));
        },
      });
    };
    const e = await t.send('PUT', new URL('/v2/blob', s.url), { 'content-length': '10' }, body).catch((x: unknown) => x as Error);
    expect(e.message).toBe('disk gone');
    expect(isRetryableError(e)).toBe(false);
    expect(opened).toBe(1);
    await t.close();
    await closeServer(s.server);
  });

  it('names the URL when the server cannot be reached at all (a name that does not resolve)', async () => {
    const t = new HttpTransport({ backoffMs: 5 });
    const e = await t.send('GET', new URL('https://no-such-host.invalid/v2/'), {}, undefined).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e.message).toMatch(/^GET https:\/\/no-such-host\.invalid\/v2\/: getaddrinfo (ENOTFOUND|EAI_AGAIN) no-such-host\.invalid/);
    await t.close();
  });

  it('does not count time the consumer spends not reading a response body as a stall', async () => {
    const body = Buffer.alloc(8 << 20, 1);
    const s = await serve((_req, res) => res.end(body));
    const t = new HttpTransport({ timeoutMs: 200, retries: 0 });
    const r = await t.send('GET', new URL('/v2/blob', s.url), {}, undefined);
    const it = r.body[Symbol.asyncIterator]();
    let got = ((await it.next()).value as Buffer).length;
    await sleep(1000); // five timeouts' worth with bytes waiting in the body's buffer
    for (let c = await it.next(); !c.done; c = await it.next()) got += (c.value as Buffer).length;
    expect(got).toBe(body.length);
    await t.close();
    await closeServer(s.server);
  });

  it('follows redirects: credentials to the same host only; a 303 turns a POST into a GET without its body', async () => {
    const other = await serve((req, res) => {
      res.end(JSON.stringify({ authorization: req.headers.authorization ?? null, method: req.method }));
    });
    const seen: { url: string; method: string; authorization?: string; length?: string }[] = [];
    const s = await serve((req, res) => {
      req.resume();
      seen.push({ url: req.url ?? '', method: req.method ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), ...(req.headers['content-length'] ? { length: req.headers['content-length'] } : {}) });
      if (req.url === '/a') res.writeHead(307, { location: '/b' }).end();
      else if (req.url === '/b') res.writeHead(302, { location: `${other.url}/c` }).end();
      else if (req.url === '/post') res.writeHead(303, { location: '/done' }).end();
      else res.end('done');
    });
    const t = new HttpTransport();
    const r = await t.send('GET', new URL('/a', s.url), { authorization: 'Bearer secret' }, undefined, s.host);
    expect(JSON.parse(await r.body.text())).toEqual({ authorization: null, method: 'GET' });
    expect(r.url.href).toBe(`${other.url}/c`);
    expect(seen.map((x) => x.authorization)).toEqual(['Bearer secret', 'Bearer secret']);
    seen.length = 0;
    const p = await t.send('POST', new URL('/post', s.url), { 'content-type': 'application/json', 'content-length': '2' }, Buffer.from('{}'), s.host);
    expect(await p.body.text()).toBe('done');
    expect(seen.map((x) => [x.method, x.url, x.length])).toEqual([
      ['POST', '/post', '2'],
      ['GET', '/done', undefined],
    ]);
    await t.close();
    await closeServer(s.server);
    await closeServer(other.server);
  });
});

describe('HttpTransport TLS from certDir (containers/image certs.d layout)', () => {
  let pki: Pki;
  let dir: string;
  let server: Server;
  let host: string;

  beforeAll(async () => {
    pki = await makePki();
    dir = await tempDir('tsbuild-transport-');
    const p = (n: string) => join(pki.dir, n);
    await writeFile(p('client.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
    await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('client.key'), '-out', p('client.csr'), '-subj', '/CN=tsbuild-client']);
    await run('openssl', ['x509', '-req', '-in', p('client.csr'), '-CA', pki.caCert, '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('client.cert'), '-days', '2', '-extfile', p('client.ext')]);
    // A registry that wants a client certificate signed by the test CA.
    server = createHttpsServer(
      { cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey), ca: await readFile(pki.caCert), requestCert: true, rejectUnauthorized: true },
      (req, res) => res.end((req.socket as TLSSocket).getPeerCertificate().subject.CN),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as { port: number }).port}`;
    for (const [name, files] of [
      ['with-client', ['ca.crt', 'client.cert', 'client.key']],
      ['ca-only', ['ca.crt']],
    ] as const) {
      await mkdir(join(dir, name, host), { recursive: true });
      for (const f of files) await writeFile(join(dir, name, host, f), await readFile(f === 'ca.crt' ? pki.caCert : p(f)));
    }
  });
  afterAll(async () => {
    await closeServer(server);
    await rm(dir, { recursive: true, force: true });
    await rm(pki.dir, { recursive: true, force: true });
  });

  it('presents name.cert with name.key as the client certificate and trusts *.crt', async () => {
    const t = new HttpTransport({ certDir: join(dir, 'with-client') });
    const r = await t.send('GET', new URL(`https://${host}/v2/`), {}, undefined);
    expect(r.status).toBe(200);
    expect(await r.body.text()).toBe('tsbuild-client');
    await t.close();
  });

  it('without the client certificate the handshake is refused', async () => {
    const t = new HttpTransport({ certDir: join(dir, 'ca-only'), retries: 0 });
    await expect(t.send('GET', new URL(`https://${host}/v2/`), {}, undefined)).rejects.toThrow();
    await t.close();
  });
});
