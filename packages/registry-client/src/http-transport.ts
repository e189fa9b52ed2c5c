import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { DEFAULT_DOMAIN, DOCKER_HUB_REGISTRY, UnavailableError } from '@tsbuild/oci';
import { redactUrl } from './registry-error.js';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type Headers = Record<string, string>;

/** A request body that can be produced again for a retry, a redirect or a re-authentication. */
export type BodySource = Buffer | (() => Readable);

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & { text(): Promise<string>; dump(): Promise<void> };
  /** The URL that answered, after redirects. */
  url: URL;
}

export interface TransportOptions {
  tlsVerify?: boolean | ((host: string) => boolean);
  certDir?: string;
  userAgent?: string;
  retries?: number;
  timeoutMs?: number;
  /** First backoff delay; doubled per attempt. */
  backoffMs?: number;
}

const MAX_REDIRECTS = 5;
const MAX_BACKOFF_MS = 10_000;
const MAX_RETRY_AFTER_MS = 60_000;
const DEFAULT_CERT_DIRS = ['/etc/containers/certs.d', '/etc/docker/certs.d'];

/** Errors from a connection (not from the server's answer) that a new attempt may not meet. */
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'STALLED',
]);

export function isRetryableError(e: unknown): boolean {
  for (let c: unknown = e; typeof c === 'object' && c !== null; c = (c as { cause?: unknown }).cause) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_CODES.has(code)) return true;
  }
  return false;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/** The host:port a reference's registry is served from (docker.io → registry-1.docker.io). */
export function registryHost(registry: string): string {
  return registry === DEFAULT_DOMAIN ? DOCKER_HUB_REGISTRY : registry;
}

/**
 * HTTP for the distribution API over undici: one keep-alive Agent per registry host carrying
 * that host's TLS settings, redirects followed by hand (so the Authorization header goes to the
 * registry only, never to the storage host a blob redirect points at), and retries with
 * exponential backoff on 5xx, 429 (Retry-After honoured) and connection failures.
 */
export class HttpTransport {
  private readonly agents = new Map<string, Promise<Agent>>();
  private readonly bases = new Map<string, Promise<URL>>();
  /** WWW-Authenticate seen by the scheme probe of /v2/, so the first real request can authenticate up front. */
  readonly probeChallenges = new Map<string, string>();
  readonly retries: number;
  readonly timeoutMs: number;
  private readonly backoffMs: number;
  private readonly userAgent: string;

  constructor(private readonly opts: TransportOptions = {}) {
    this.retries = opts.retries ?? 4;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.backoffMs = opts.backoffMs ?? 250;
    this.userAgent = opts.userAgent ?? 'tsbuild';
  }

  tlsVerify(host: string): boolean | undefined {
    const v = this.opts.tlsVerify;
    return typeof v === 'function' ? v(host) : v;
  }

  /**
   * `https://host/v2/` or, for a registry we may talk to insecurely, `http://host/v2/`. As docker
   * does for insecure registries (and for 127.0.0.0/8, which it treats as insecure), https is
   * tried first and http used when the https attempt cannot connect; a certificate that does not
   * verify is an error unless TLS verification was turned off.
   */
  base(registry: string): Promise<URL> {
    const host = registryHost(registry);
    let p = this.bases.get(host);
    if (p === undefined) {
      p = this.probe(host);
      this.bases.set(host, p);
      p.catch(() => this.bases.delete(host));
    }
    return p;
  }

  private async probe(host: string): Promise<URL> {
    const verify = this.tlsVerify(host);
    const https = new URL(`https://${host}/v2/`);
    const mayUseHttp = verify === false || (verify === undefined && isLoopback(host));
    if (!mayUseHttp) return https;
    try {
      const r = await this.once('GET', https, {}, undefined);
      this.noteChallenge(host, r);
      await r.body.dump();
      return https;
    } catch (e) {
      if (verify !== false && isCertificateError(e)) throw e;
      const http = new URL(`http://${host}/v2/`);
      const r = await this.once('GET', http, {}, undefined);
      this.noteChallenge(host, r);
      await r.body.dump();
      return http;
    }
  }

  private noteChallenge(host: string, r: HttpResponse): void {
    const h = r.headers['www-authenticate'];
    if (r.status === 401 && h !== undefined) this.probeChallenges.set(host, Array.isArray(h) ? h.join(', ') : h);
  }

  private agent(host: string): Promise<Agent> {
    let a = this.agents.get(host);
    if (a === undefined) {
      a = this.makeAgent(host);
      this.agents.set(host, a);
    }
    return a;
  }

  /**
   * TLS material as containers/image reads it from `<certDir>/<host[:port]>/`: every `*.crt` is
   * a CA, a `name.cert` with its `name.key` is a client certificate.
   */
  private async makeAgent(host: string): Promise<Agent> {
    const connect: { ca?: string[]; cert?: string; key?: string; rejectUnauthorized?: boolean } = {};
    const dirs = this.opts.certDir !== undefined ? [this.opts.certDir] : DEFAULT_CERT_DIRS;
    for (const base of dirs) {
      const dir = join(base, host);
      let names: string[];
      try {
        names = (await readdir(dir)).sort();
      } catch {
        continue;
      }
      const cas: string[] = [];
      for (const n of names) {
        if (n.endsWith('.crt')) cas.push(await readFile(join(dir, n), 'utf8'));
        if (n.endsWith('.cert') && names.includes(`${n.slice(0, -'.cert'.length)}.key`)) {
          connect.cert = await readFile(join(dir, n), 'utf8');
          connect.key = await readFile(join(dir, `${n.slice(0, -'.cert'.length)}.key`), 'utf8');
        }
      }
      // Added to, not replacing, the system roots: a registry with a public certificate keeps working.
      if (cas.length > 0) connect.ca = [...(await systemRoots()), ...cas];
      break;
    }
    if (this.tlsVerify(host) === false) connect.rejectUnauthorized = false;
    return new Agent({
      connect,
      keepAliveTimeout: 30_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connections: 16,
    });
  }

  /** One exchange, following redirects; `auth` goes only to `authHost`. No retries. */
  async once(method: HttpMethod, url: URL, headers: Headers, body: BodySource | undefined, authHost?: string): Promise<HttpResponse> {
    let current = url;
    let m = method;
    let b = body;
    for (let i = 0; ; i++) {
      const h: Headers = { 'user-agent': this.userAgent, ...headers };
      // RFC 9110 §15.4: a redirect to another origin must not carry our credentials; registries
      // redirect blob GETs to object storage with a pre-signed URL that an extra header breaks.
      if (authHost !== undefined && current.host !== authHost) delete h.authorization;
      const dispatcher: Dispatcher = await this.agent(current.host);
      let payload: Buffer | Readable | undefined;
      if (b instanceof Buffer) payload = b;
      else if (typeof b === 'function') {
        // The callback form destroys the source too when the watchdog fires or the request fails.
        payload = pipeline(b(), stallWatchdog(this.timeoutMs, `${m} ${redactUrl(current)}`), () => undefined);
      }
      const r = await request(current, {
        method: m,
        headers: h,
        ...(payload !== undefined ? { body: payload } : {}),
        dispatcher,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const loc = r.headers.location;
      if ([301, 302, 303, 307, 308].includes(r.statusCode) && typeof loc === 'string' && i < MAX_REDIRECTS) {
        await r.body.dump();
        current = new URL(loc, current);
        if (r.statusCode === 303 || ((r.statusCode === 301 || r.statusCode === 302) && m !== 'HEAD')) {
          m = m === 'HEAD' ? 'HEAD' : 'GET';
          b = undefined;
        }
        continue;
      }
      return { status: r.statusCode, headers: r.headers, body: r.body as unknown as HttpResponse['body'], url: current };
    }
  }

  /**
   * `once` with retries: connection failures, 5xx and 429 are tried again after 250 ms, 500 ms,
   * 1 s … (or the Retry-After the server asked for, capped at a minute). The last answer is
   * returned as is; the last connection error is thrown as UnavailableError naming the URL.
   */
  async send(method: HttpMethod, url: URL, headers: Headers, body: BodySource | undefined, authHost?: string, retry = true): Promise<HttpResponse> {
    const retries = retry ? this.retries : 0;
    for (let attempt = 0; ; attempt++) {
      let r: HttpResponse;
      try {
        r = await this.once(method, url, headers, body, authHost);
      } catch (e) {
        if (attempt < retries && isRetryableError(e)) {
          await sleep(this.backoff(attempt));
          continue;
        }
        if (isRetryableError(e) && retry) {
          throw new UnavailableError(`${method} ${redactUrl(url)}: ${describeError(e)} (after ${attempt + 1} attempts)`, { cause: e });
        }
        throw e;
      }
      if ((r.status >= 500 || r.status === 429) && attempt < retries) {
        const wait = retryAfterMs(r.headers['retry-after']) ?? this.backoff(attempt);
        await r.body.dump();
        await sleep(wait);
        continue;
      }
      return r;
    }
  }

  backoff(attempt: number): number {
    return Math.min(MAX_BACKOFF_MS, this.backoffMs * 2 ** attempt);
  }

  async close(): Promise<void> {
    const agents = await Promise.all(this.agents.values());
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }
}

/** Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function retryAfterMs(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return undefined;
  if (/^\d+$/.test(s.trim())) return Math.min(MAX_RETRY_AFTER_MS, Number(s.trim()) * 1000);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, t - Date.now()));
}

function isCertificateError(e: unknown): boolean {
  for (let c: unknown = e; typeof c === 'object' && c !== null; c = (c as { cause?: unknown }).cause) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT/.test(code)) return true;
  }
  return false;
}

/** The innermost error's message and code, for a one-line message. */
export function describeError(e: unknown): string {
  let c: unknown = e;
  while (typeof c === 'object' && c !== null && (c as { cause?: unknown }).cause !== undefined) c = (c as { cause?: unknown }).cause;
  const code = (c as { code?: unknown } | null)?.code;
  const msg = c instanceof Error ? c.message : String(c);
  return typeof code === 'string' && !msg.includes(code) ? `${msg} (${code})` : msg;
}

let roots: Promise<string[]> | undefined;
async function systemRoots(): Promise<string[]> {
  const tls = await import('node:tls');
  return (roots ??= Promise.resolve([...tls.rootCertificates]));
}

/**
 * Fails a stream that passes no data for `ms`: a stalled upload (a server that stopped reading)
 * would otherwise hang forever, since undici's timeouts watch only the response.
 */
export function stallWatchdog(ms: number, what: string): Transform {
  let timer: NodeJS.Timeout | undefined;
  const t: Transform = new Transform({
    transform(chunk, _enc, cb) {
      arm();
      cb(null, chunk);
    },
    flush(cb) {
      clearTimeout(timer);
      cb();
    },
    destroy(err, cb) {
      clearTimeout(timer);
      cb(err);
    },
  });
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => t.destroy(Object.assign(new Error(`${what}: no progress for ${ms} ms`), { code: 'STALLED' })), ms);
    timer.unref();
  };
  arm();
  return t;
}
