import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { MediaType, type Digest } from '@tsbuild/oci';
import { closeServer } from './registry-server.js';

/** One request as a test server saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  authorization?: string;
  body: string;
}

export interface TestServer {
  /** host:port */
  host: string;
  url: string;
  log: SeenRequest[];
  /** Answers a request; the default answers 404. Set by each test. */
  handle: (req: IncomingMessage, res: ServerResponse, body: string) => void;
  stop(): Promise<void>;
}

/**
 * A node:http server on `address` (127.0.0.1, or 127.0.0.2 to stand for another host) and a random
 * port that records every request (with its Authorization header and body) before `handle` answers it.
 */
export async function startServer(address = '127.0.0.1'): Promise<TestServer> {
  const t: TestServer = { host: '', url: '', log: [], handle: (_q, res) => res.writeHead(404).end(), stop: async () => undefined };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      t.log.push({ method: req.method ?? '', url: req.url ?? '', ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}), body });
      t.handle(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  t.host = `${address}:${(server.address() as { port: number }).port}`;
  t.url = `http://${t.host}`;
  t.stop = () => closeServer(server);
  return t;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;

/** An image as bytes: a layer (random), its config and an OCI manifest, with their digests. */
export interface FakeImage {
  layer: Buffer;
  config: Buffer;
  manifest: Buffer;
  layerDigest: Digest;
  configDigest: Digest;
  manifestDigest: Digest;
}

/** A manifest naming `config` (bytes of any kind) and one random layer. */
export function fakeImage(opts: { config?: Buffer; configSize?: number; manifest?: (m: Record<string, unknown>) => unknown } = {}): FakeImage {
  const layer = randomBytes(50_000);
  const layerDigest = sha256(layer);
  const config =
    opts.config ??
    Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', created: '2024-01-01T00:00:00Z', rootfs: { type: 'layers', diff_ids: [layerDigest] } }));
  const configDigest = sha256(config);
  const m: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDigest, size: opts.configSize ?? config.length },
    layers: [{ mediaType: MediaType.OciLayerGzip, digest: layerDigest, size: layer.length }],
  };
  const shaped = opts.manifest !== undefined ? opts.manifest(m) : m;
  const manifest = Buffer.isBuffer(shaped) ? shaped : Buffer.from(JSON.stringify(shaped));
  return { layer, config, manifest, layerDigest, configDigest, manifestDigest: sha256(manifest) };
}

/**
 * The distribution API for one image, as a hostile registry's starting point: GET /v2/ (with
 * the API version header, so the client picks plain http at once), manifests by tag or digest,
 * blobs. Anything else is 404. With `bearer`, every request without a Bearer token gets a 401
 * naming `realm`. Returns whether it answered.
 */
export function serveImage(
  img: FakeImage,
  req: IncomingMessage,
  res: ServerResponse,
  opts: { bearer?: { realm: string } } = {},
): boolean {
  const url = req.url ?? '';
  const base = { 'docker-distribution-api-version': 'registry/2.0' };
  if (opts.bearer !== undefined && !(req.headers.authorization ?? '').startsWith('Bearer ')) {
    res.writeHead(401, { ...base, 'content-type': 'application/json', 'www-authenticate': `Bearer realm="${opts.bearer.realm}",service="hostile"` });
    res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    return true;
  }
  if (url === '/v2/') {
    res.writeHead(200, { ...base, 'content-type': 'application/json' }).end('{}');
    return true;
  }
  if (/^\/v2\/.+\/manifests\//.test(url)) {
    res.writeHead(200, { ...base, 'content-type': MediaType.OciManifest, 'content-length': img.manifest.length, 'docker-content-digest': img.manifestDigest });
    res.end(req.method === 'HEAD' ? undefined : img.manifest);
    return true;
  }
  for (const [d, b] of [
    [img.configDigest, img.config],
    [img.layerDigest, img.layer],
  ] as const) {
    if (url.endsWith(`/blobs/${d}`)) {
      res.writeHead(200, { ...base, 'content-type': 'application/octet-stream', 'content-length': b.length, 'docker-content-digest': d });
      res.end(req.method === 'HEAD' ? undefined : b);
      return true;
    }
  }
  return false;
}

/**
 * Answers with headers and then `chunk` every `everyMs` until `maxBytes` went out or the client
 * hung up: `everyMs` 0 is a flood (an endless body), a larger one a drip. Counts what it wrote.
 */
export function stream(
  res: ServerResponse,
  opts: { status?: number; headers?: Record<string, string>; chunk: Buffer; everyMs: number; maxBytes: number },
): { written: () => number } {
  let written = 0;
  res.writeHead(opts.status ?? 200, opts.headers ?? { 'content-type': 'application/json' });
  let stopped = false;
  res.on('close', () => (stopped = true));
  const next = (): void => {
    if (stopped) return;
    if (written >= opts.maxBytes) {
      res.end();
      return;
    }
    written += opts.chunk.length;
    const ok = res.write(opts.chunk);
    if (opts.everyMs > 0) setTimeout(next, opts.everyMs);
    else if (ok) setImmediate(next);
    else res.once('drain', next);
  };
  next();
  return { written: () => written };
}

/** A registry whose manifest sends its headers and a few bytes, then nothing: a stalled body. */
export const stallingManifest: TestServer['handle'] = (req, res) => {
  if (req.url?.includes('/manifests/')) {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': '1000' });
    res.write('{"schemaVersion":');
    return;
  }
  if (!serveImage(fakeImage(), req, res)) res.writeHead(404).end();
};
