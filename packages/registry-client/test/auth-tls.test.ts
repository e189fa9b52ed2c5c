import { chmod, copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailedPreconditionError, MediaType, NotFoundError, parseReference } from '@tsbuild/oci';
import { RegistryClient, authFileProvider, login, logout, registryErrorInfo, staticAuthProvider } from '../src/index.js';
import {
  closeServer,
  freePort,
  makePki,
  randomBlob,
  startRegistry,
  startTokenServer,
  tempDir,
  type Pki,
  type RunningRegistry,
  type TokenServer,
} from './registry-server.js';

let pki: Pki;
let dir: string;
let tlsReg: RunningRegistry;
let tokenReg: RunningRegistry;
let tokens: TokenServer;
let cdn: Server;
let cdnSeen: { path: string; authorization?: string }[] = [];
let certDir: string;

const PASSWORD = 's3cr3t-Pa55';


beforeAll(async () => {
  pki = await makePki();
  dir = await tempDir('tsbuild-auth-');
  tlsReg = await startRegistry({ tls: { cert: pki.serverCert, key: pki.serverKey }, htpasswd: { users: { alice: PASSWORD } } });
  certDir = join(dir, 'certs.d');
  await mkdir(join(certDir, tlsReg.host), { recursive: true });
  await copyFile(pki.caCert, join(certDir, tlsReg.host, 'ca.crt'));

  tokens = await startTokenServer({ pki, issuer: 'tsbuild-test-issuer', service: 'tsbuild-test-registry', users: { bob: PASSWORD } });
  // A "CDN" the registry redirects blob GETs to (storage middleware `redirect`), serving the
  // registry's filesystem storage; it records whether an Authorization header reached it.
  const cdnPort = await freePort();
  let storage = '';
  cdn = createServer((req, res) => {
    cdnSeen.push({ path: req.url ?? '', ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}) });
    readFile(join(storage, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname))).then(
      (b) => res.writeHead(200, { 'content-length': b.length }).end(b),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => cdn.listen(cdnPort, '127.0.0.1', r));
  tokenReg = await startRegistry({
    token: { realm: tokens.url, service: 'tsbuild-test-registry', issuer: 'tsbuild-test-issuer', rootcertbundle: pki.tokenCert },
    redirectTo: `http://localhost:${cdnPort}`,
  });
  storage = tokenReg.storage;
});

afterAll(async () => {
  await tlsReg.stop();
  await tokenReg.stop();
  await tokens.stop();
  await closeServer(cdn);
  await rm(dir, { recursive: true, force: true });
  await rm(pki.dir, { recursive: true, force: true });
});

/** Probe, session and HEAD sent at once (as push sends them), then the upload and a read back; closes the client. */
async function uploadWithEarlyRequests(c: RegistryClient, repo: string): Promise<void> {
  const ref = parseReference(repo);
  const b = randomBlob(3 << 20);
  c.warmUp(ref.domain);
  c.prepareUpload(ref);
  c.checkBlobs(ref, [b.d]);
  expect(await c.putBlob(ref, b.d, () => Readable.from([b.data]))).toBe('uploaded');
  expect((await buffer(await c.getBlob(ref, b.d))).equals(b.data)).toBe(true);
  await c.close();
}

describe('TLS and basic auth (htpasswd)', () => {
  it('verifies the certificate by default: an unknown CA fails', async () => {
    const c = new RegistryClient({ certDir: join(dir, 'empty'), retries: 0 });
    await expect(c.ping(tlsReg.host)).rejects.toThrow(/certificate/i);
    await c.close();
  });

  it('trusts ca.crt from certDir/<host:port>/, and authenticates with basic credentials', async () => {
    const c = new RegistryClient({ certDir, auth: staticAuthProvider({ username: 'alice', password: PASSWORD }) });
    await c.ping(tlsReg.host);
    const ref = parseReference(`${tlsReg.host}/basic/x`);
    const b = randomBlob(5000);
    expect(await c.putBlob(ref, b.d, () => Readable.from([b.data]))).toBe('uploaded');
    expect((await buffer(await c.getBlob(ref, b.d))).equals(b.data)).toBe(true);
    expect((await c.endpoint(tlsReg.host)).protocol).toBe('https:');
    await c.close();
  });

  it('requests sent before the scheme probe answers (plain http, no credentials) fall back over TLS with credentials', async () => {
    // Loopback: the probe tries plain http first, and so do these; this port speaks TLS only.
    await uploadWithEarlyRequests(new RegistryClient({ certDir, auth: staticAuthProvider({ username: 'alice', password: PASSWORD }) }), `${tlsReg.host}/basic/early`);
  });

  it('tlsVerify false accepts the self-signed registry', async () => {
    const c = new RegistryClient({ tlsVerify: false, certDir: join(dir, 'empty'), auth: staticAuthProvider({ username: 'alice', password: PASSWORD }) });
    await c.ping(tlsReg.host);
    expect((await c.endpoint(tlsReg.host)).protocol).toBe('https:');
    await c.close();
  });

  it('a wrong password is a one-line 401 error that does not contain the password', async () => {
    const c = new RegistryClient({ certDir, auth: staticAuthProvider({ username: 'alice', password: 'wrong-pw-123' }) });
    const e = await c.getManifest(parseReference(`${tlsReg.host}/basic/x:v1`)).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(FailedPreconditionError);
    expect(registryErrorInfo(e)?.status).toBe(401);
    expect(e.message).toMatch(/401 UNAUTHORIZED/);
    expect(e.message).not.toContain('wrong-pw-123');
    expect(e.message).not.toContain(Buffer.from('alice:wrong-pw-123').toString('base64'));
    await c.close();
  });

  it('login verifies against the registry and stores base64 user:pass in auth.json with mode 0600; logout removes it', async () => {
    const authFile = join(dir, 'run', 'containers', 'auth.json');
    await expect(login(tlsReg.host, { username: 'alice', password: 'nope' }, { authFile, client: { certDir } })).rejects.toThrow(/401/);
    await expect(stat(authFile)).rejects.toThrow();
    await login(tlsReg.host, { username: 'alice', password: PASSWORD }, { authFile, client: { certDir } });
    const saved = JSON.parse(await readFile(authFile, 'utf8')) as { auths: Record<string, { auth: string }> };
    expect(Buffer.from(saved.auths[tlsReg.host]!.auth, 'base64').toString()).toBe(`alice:${PASSWORD}`);
    expect((await stat(authFile)).mode & 0o777).toBe(0o600);
    const c = new RegistryClient({ certDir, auth: authFileProvider({ authFile }) });
    await c.ping(tlsReg.host);
    await c.close();
    await logout(tlsReg.host, { authFile });
    expect(JSON.parse(await readFile(authFile, 'utf8')).auths).toEqual({});
    await expect(logout(tlsReg.host, { authFile })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('reads ~/.docker/config.json credential helpers (docker-credential-<name> get)', async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-tsbuildtest');
    await writeFile(helper, `#!/bin/sh\nread server\nif [ "$server" = "${tlsReg.host}" ]; then echo '{"ServerURL":"'$server'","Username":"alice","Secret":"${PASSWORD}"}'; else echo "credentials not found in native keychain"; exit 1; fi\n`);
    await chmod(helper, 0o755);
    const dockerDir = join(dir, 'docker');
    await mkdir(dockerDir, { recursive: true });
    await writeFile(join(dockerDir, 'config.json'), JSON.stringify({ auths: {}, credHelpers: { [tlsReg.host]: 'tsbuildtest' } }));
    const saved = { PATH: process.env.PATH, DOCKER_CONFIG: process.env.DOCKER_CONFIG, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };
    process.env.PATH = `${bin}:${process.env.PATH}`;
    process.env.DOCKER_CONFIG = dockerDir;
    process.env.XDG_RUNTIME_DIR = join(dir, 'no-runtime');
    try {
      const p = authFileProvider();
      expect(await p.credentials(tlsReg.host)).toEqual({ username: 'alice', password: PASSWORD });
      expect(await p.credentials('other.example:5000')).toBeUndefined();
      const c = new RegistryClient({ certDir, auth: p });
      await c.ping(tlsReg.host);
      await c.close();
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
});

describe('bearer token auth (token server signing JWTs the registry verifies)', () => {
  const creds = staticAuthProvider({ username: 'bob', password: PASSWORD });

  it('pushes and pulls with tokens fetched per scope and cached', async () => {
    const c = new RegistryClient({ auth: creds });
    tokens.requests.length = 0;
    const ref = parseReference(`${tokenReg.host}/team/app`);
    const b1 = randomBlob(3000);
    const b2 = randomBlob(4000);
    await c.putBlob(ref, b1.d, () => Readable.from([b1.data]));
    await c.putBlob(ref, b2.d, () => Readable.from([b2.data]));
    expect((await buffer(await c.getBlob(ref, b1.d))).equals(b1.data)).toBe(true);
    expect((await buffer(await c.getBlob(ref, b2.d))).equals(b2.data)).toBe(true);
    // One token for pull,push and one for pull, however many requests went out.
    expect(tokens.requests.map((r) => r.scopes.join(' ')).sort()).toEqual(['repository:team/app:pull', 'repository:team/app:pull,push']);
    expect(tokens.requests.every((r) => r.user === 'bob')).toBe(true);
    await c.close();
  });

  it('requests sent before the probe answers get 401 without credentials and go again with a token', async () => {
    tokens.requests.length = 0;
    await uploadWithEarlyRequests(new RegistryClient({ auth: creds }), `${tokenReg.host}/team/early`);
    expect(tokens.requests.every((r) => r.user === 'bob')).toBe(true);
    expect(tokens.requests.map((r) => r.scopes.join(' '))).toContain('repository:team/early:pull,push');
  });

  it('follows a blob redirect to another host without the Authorization header', async () => {
    const c = new RegistryClient({ auth: creds });
    const ref = parseReference(`${tokenReg.host}/team/redirect`);
    const b = randomBlob(6000);
    await c.putBlob(ref, b.d, () => Readable.from([b.data]));
    cdnSeen = [];
    expect((await buffer(await c.getBlob(ref, b.d))).equals(b.data)).toBe(true);
    expect(cdnSeen).toHaveLength(1);
    expect(cdnSeen[0]!.path).toContain(b.d.digest.slice('sha256:'.length));
    expect(cdnSeen[0]!.authorization).toBeUndefined();
    await c.close();
  });

  it('gets a new token when the registry answers 401 to a cached one', async () => {
    const c = new RegistryClient({ auth: creds });
    const ref = parseReference(`${tokenReg.host}/team/refresh`);
    const b = randomBlob(100);
    await c.putBlob(ref, b.d, () => Readable.from([b.data]));
    // A fresh client knows the challenge from its /v2/ probe and authenticates up front; the
    // token it gets has expired though the server said it lasts an hour, so the registry
    // answers 401 and the client must fetch a new token and try again.
    const fresh = new RegistryClient({ auth: creds });
    await fresh.ping(tokenReg.host);
    tokens.requests.length = 0;
    tokens.expiredNext = 1;
    expect(await fresh.blobExists(ref, b.d)).toBe(true);
    expect(tokens.requests.map((r) => r.scopes)).toEqual([['repository:team/refresh:pull'], ['repository:team/refresh:pull']]);
    expect(await fresh.blobExists(ref, b.d)).toBe(true);
    expect(tokens.requests).toHaveLength(2);
    await c.close();
    await fresh.close();
  });

  it('pulls anonymously where the token server allows it, and explains a refused push', async () => {
    const c = new RegistryClient({ auth: creds });
    const pub = parseReference(`${tokenReg.host}/public/base:v1`);
    const b = randomBlob(500);
    await c.putBlob(pub, b.d, () => Readable.from([b.data]));
    const cfg = { mediaType: MediaType.OciConfig, digest: b.d.digest, size: b.d.size };
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: cfg, layers: [] }));
    await c.putManifest(pub, body, MediaType.OciManifest);
    const anon = new RegistryClient();
    expect((await anon.getManifest(pub)).body.equals(body)).toBe(true);
    const e = await anon.putManifest(parseReference(`${tokenReg.host}/public/base:v2`), body, MediaType.OciManifest).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(FailedPreconditionError);
    expect(e.message).toMatch(/^push of manifest 127\.0\.0\.1:\d+\/public\/base:v2: 401 UNAUTHORIZED/);
    await c.close();
    await anon.close();
  });

  it('a wrong password fails at the token server, without the password in the message', async () => {
    const c = new RegistryClient({ auth: staticAuthProvider({ username: 'bob', password: 'not-it-987' }) });
    const e = await c.resolve(parseReference(`${tokenReg.host}/team/app:v1`)).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(FailedPreconditionError);
    expect(e.message).toMatch(/token request to http:\/\/127\.0\.0\.1:\d+\/token .* failed: 401 UNAUTHORIZED/);
    expect(e.message).not.toContain('not-it-987');
    await c.close();
  });
});
