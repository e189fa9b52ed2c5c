import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import type { Digest } from '@tsbuild/oci';

export const run = promisify(execFile);

export async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `size` random bytes and their descriptor, to upload as a blob. */
export function randomBlob(size: number): { data: Buffer; d: { mediaType: string; digest: Digest; size: number } } {
  const data = randomBytes(size);
  return { data, d: { mediaType: 'application/octet-stream', digest: `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest, size } };
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface RegistryOptions {
  tls?: { cert: string; key: string };
  htpasswd?: { users: Record<string, string> };
  token?: { realm: string; service: string; issuer: string; rootcertbundle: string };
  /** Storage middleware `redirect`: blob GETs answer 307 to this base URL + the storage path. */
  redirectTo?: string;
}

export interface RunningRegistry {
  host: string;
  port: number;
  root: string;
  storage: string;
  url: string;
  stop(): Promise<void>;
}

/** Debian's docker-registry (distribution 2.8) on 127.0.0.1:<free port>, waited for until /v2/ answers. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const root = await tempDir('tsbuild-registry-');
  const storage = join(root, 'storage');
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log: { level: error, accesslog: { disabled: true } }',
    'storage:',
    `  filesystem: { rootdirectory: ${storage} }`,
    '  delete: { enabled: true }',
  ];
  if (opts.redirectTo !== undefined) {
    lines.push('middleware:', '  storage:', '    - name: redirect', `      options: { baseurl: "${opts.redirectTo}" }`);
  }
  lines.push('http:', `  addr: 127.0.0.1:${port}`, `  secret: ${randomBytes(16).toString('hex')}`);
  if (opts.tls !== undefined) lines.push(`  tls: { certificate: ${opts.tls.cert}, key: ${opts.tls.key} }`);
  if (opts.htpasswd !== undefined) {
    const file = join(root, 'htpasswd');
    await writeFile(
      file,
      Object.entries(opts.htpasswd.users)
        .map(([u, p]) => `${u}:${bcrypt.hashSync(p, 5)}`)
        .join('\n') + '\n',
    );
    lines.push('auth:', `  htpasswd: { realm: test-realm, path: ${file} }`);
  }
  if (opts.token !== undefined) {
    const t = opts.token;
    lines.push('auth:', `  token: { realm: "${t.realm}", service: ${t.service}, issuer: ${t.issuer}, rootcertbundle: ${t.rootcertbundle} }`);
  }
  const config = join(root, 'config.yml');
  await writeFile(config, lines.join('\n') + '\n');
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const scheme = opts.tls !== undefined ? 'https' : 'http';
  const url = `${scheme}://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not listen on ${port}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    root,
    storage,
    url,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(root, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** A key and self-signed certificate that signs tokens; the registry trusts it as its root bundle. */
  tokenKey: string;
  tokenCert: string;
}

/** A CA and a server certificate for 127.0.0.1 (IP SAN), and a token signing key, made with openssl. */
export async function makePki(): Promise<Pki> {
  const dir = await tempDir('tsbuild-pki-');
  const p = (n: string) => join(dir, n);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=tsbuild test CA']);
  await writeFile(p('san.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1']);
  await run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.crt'), '-days', '2', '-extfile', p('san.ext')]);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('token.key'), '-out', p('token.crt'), '-days', '2', '-subj', '/CN=tsbuild token signer']);
  return { dir, caCert: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'), tokenKey: p('token.key'), tokenCert: p('token.crt') };
}

export interface TokenServer {
  url: string;
  /** Every token request: scopes asked, whether basic credentials came, the answer's status. */
  requests: { scopes: string[]; user?: string; status: number }[];
  /** Lifetime of issued tokens in seconds. */
  expiresIn: number;
  /** Issue this many tokens already expired (beyond the registry's 60 s leeway) yet announced as valid for an hour. */
  expiredNext: number;
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/**
 * A token server as the distribution token spec describes: GET ?service=&scope=… with optional
 * basic credentials answers {token, expires_in, issued_at}, a JWT (RS256) whose header carries
 * the signing certificate (x5c) and whose claims (iss, sub, aud, exp, nbf, iat, jti, access[])
 * grant the asked actions: everything to known users, pull on `public/*` to anyone.
 */
export async function startTokenServer(opts: { pki: Pki; issuer: string; service: string; users: Record<string, string> }): Promise<TokenServer> {
  const key = await readFile(opts.pki.tokenKey, 'utf8');
  const der = new X509Certificate(await readFile(opts.pki.tokenCert)).raw;
  const port = await freePort();
  const state: TokenServer = { url: `http://127.0.0.1:${port}/token`, requests: [], expiresIn: 300, expiredNext: 0, stop: async () => undefined };
  const server = createHttpServer((req, res) => {
    const u = new URL(req.url ?? '/', state.url);
    const scopes = u.searchParams.getAll('scope');
    let user: string | undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const [n, pw] = Buffer.from(authz.slice(6), 'base64').toString().split(':') as [string, string];
      if (opts.users[n] !== pw) {
        state.requests.push({ scopes, user: n, status: 401 });
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      user = n;
    }
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(':') as [string, string, string];
      if (type !== 'repository' || name === undefined) return [];
      const allowed = (actions ?? '').split(',').filter((a) => user !== undefined || (a === 'pull' && name.startsWith('public/')));
      return [{ type, name, actions: allowed }];
    });
    const now = Math.floor(Date.now() / 1000);
    const expired = state.expiredNext > 0;
    if (expired) state.expiredNext--;
    const header = { typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] };
    const claims = { iss: opts.issuer, sub: user ?? '', aud: opts.service, exp: expired ? now - 300 : now + state.expiresIn, nbf: now - 600, iat: now - 600, jti: randomBytes(8).toString('hex'), access };
    const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(signing).sign(key);
    const token = `${signing}.${b64url(sig)}`;
    state.requests.push({ scopes, ...(user !== undefined ? { user } : {}), status: 200 });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: expired ? 3600 : state.expiresIn, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  state.stop = () => closeServer(server);
  return state;
}

export function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

export type FaultAction =
  | { kind: 'pass' }
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Answer this instead of the registry (after delayMs). */
  | { kind: 'respond'; status: number; headers: Record<string, string>; body: string; delayMs?: number }
  /** Forward, but cut the client's connection after this many body bytes of the response. */
  | { kind: 'drop-response'; after: number }
  /** Forward, but cut the connection after reading this many bytes of the request body. */
  | { kind: 'drop-request'; after: number }
  /** Forward, flipping one byte of the response body. */
  | { kind: 'corrupt' }
  /** Send the headers and this many body bytes, then nothing. */
  | { kind: 'stall'; after: number };

export interface FaultProxy {
  host: string;
  port: number;
  /** Every request seen: method, path, authorization header. */
  log: { method: string; path: string; authorization?: string; range?: string }[];
  /** Decides what happens to each request; default pass. */
  plan: (req: IncomingMessage) => FaultAction;
  stop(): Promise<void>;
}

/** An HTTP proxy in front of a registry that injects faults. Host is passed on, so Locations point back at the proxy. */
export async function startFaultProxy(target: { port: number }): Promise<FaultProxy> {
  const port = await freePort();
  const proxy: FaultProxy = { host: `127.0.0.1:${port}`, port, log: [], plan: () => ({ kind: 'pass' }), stop: async () => undefined };
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    proxy.log.push({
      method: req.method ?? '',
      path: req.url ?? '',
      ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}),
      ...(req.headers.range !== undefined ? { range: req.headers.range } : {}),
    });
    const action = proxy.plan(req);
    if (action.kind === 'status') {
      req.resume();
      res.writeHead(action.status, { 'content-type': 'application/json', ...(action.headers ?? {}) });
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'injected fault' }] }));
      return;
    }
    if (action.kind === 'respond') {
      req.resume();
      setTimeout(() => res.writeHead(action.status, action.headers).end(action.body), action.delayMs ?? 0);
      return;
    }
    const up = httpRequest({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      let sent = 0;
      let flipped = false;
      ur.on('data', (c: Buffer) => {
        if (action.kind === 'corrupt' && !flipped && c.length > 0) {
          c = Buffer.from(c);
          c[0] = c[0]! ^ 0xff;
          flipped = true;
        }
        if ((action.kind === 'drop-response' || action.kind === 'stall') && sent + c.length > action.after) {
          const part = c.subarray(0, Math.max(0, action.after - sent));
          sent = action.after;
          ur.destroy();
          // Cut the connection only once the part reached the socket, as a real break would.
          res.write(part, () => {
            if (action.kind === 'drop-response') setTimeout(() => res.socket?.destroy(), 20);
          });
          return;
        }
        sent += c.length;
        res.write(c);
      });
      ur.on('end', () => res.end());
    });
    up.on('error', () => res.socket?.destroy());
    if (action.kind === 'drop-request') {
      let got = 0;
      req.on('data', (c: Buffer) => {
        if (got + c.length >= action.after) {
          up.write(c.subarray(0, action.after - got));
          got = action.after;
          // Both sides lose the connection mid-body, as when a network path breaks.
          up.destroy();
          req.socket.destroy();
          return;
        }
        got += c.length;
        up.write(c);
      });
      req.on('end', () => up.end());
    } else {
      req.pipe(up);
    }
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  proxy.stop = () => closeServer(server);
  return proxy;
}
