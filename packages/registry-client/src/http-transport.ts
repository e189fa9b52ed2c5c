import { readdir, readFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { join } from 'node:path';
import { pipeline, Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_DOMAIN, DOCKER_HUB_REGISTRY, FailedPreconditionError, InvalidArgumentError, UnavailableError, isTsbuildError } from '@tsbuild/oci';
import { printable, redactUrl } from './registry-error.js';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type Headers = Record<string, string>;

/** A request body that can be produced again for a retry, a redirect or a re-authentication. */
export type BodySource = Buffer | (() => Readable);

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /**
   * The body read into memory, at most `cap` bytes (default MAX_TEXT_BODY): more is an error
   * naming the request and the cap (`label` says what it is a limit of: "manifest").
   */
  body: Readable & { text(cap?: number, label?: string): Promise<string>; buffer(cap?: number, label?: string): Promise<Buffer>; dump(): Promise<void> };
  /** The URL that answered, after redirects. */
  url: URL;
}

export interface TransportOptions {
  tlsVerify?: boolean | ((host: string) => boolean);
  certDir?: string;
  userAgent?: string;
  retries?: number;
  /** No progress for this long fails a request (STALLED, retryable). Default 60 s. */
  timeoutMs?: number;
  /**
   * A request whose body is read into memory (manifests, tokens, errors, tag lists) must be
   * answered, body and all, within this long after it was sent. Default 2 minutes.
   */
  deadlineMs?: number;
  /**
   * A streamed response body (a blob) that brings fewer than this many bytes per second over a
   * window of `timeoutMs` fails (STALLED, retryable). Default 4096.
   */
  minBytesPerSecond?: number;
  /** First backoff delay; doubled per attempt. */
  backoffMs?: number;
}

/**
 * Every body read into memory is capped, as containers/image does since CVE-2020-1702 (an
 * endless answer otherwise grows the process until the kernel kills it): this is the cap of
 * `text()` when the caller names none; what a token server answers is well below it
 * (containers/image allows 1 MiB for tokens and error bodies).
 */
export const MAX_TEXT_BODY = 1 << 20;

/**
 * Why a deadline as well as the stall timeout: a server that sends one byte now and then never
 * lets the stall timeout fire. Two minutes is ample for what is read into memory (at most a
 * 4 MiB manifest or a 16 MiB tag list page: 4 MiB takes ~35 s at 1 Mbit/s).
 */
const DEFAULT_DEADLINE_MS = 120_000;

/**
 * Blobs stream to disk and may be gigabytes, so no flat deadline fits them: a 5 GB layer takes
 * over an hour at 10 Mbit/s. Nor does one scaled by size: the size comes from the manifest, which
 * the same server wrote. They get a floor on throughput instead, as curl's
 * CURLOPT_LOW_SPEED_LIMIT/LOW_SPEED_TIME and git's http.lowSpeedLimit/lowSpeedTime do: fewer than
 * this many bytes per second, averaged over each `timeoutMs` window, fails the transfer (a
 * dropped transfer resumes with a Range request). A blob then takes at most size / floor, and a
 * server dripping a byte every few seconds is cut after one window. 4 KiB/s (32 kbit/s) is far
 * below any link an image is pulled over.
 */
const DEFAULT_MIN_BYTES_PER_SECOND = 4096;

/** The schemes a request (or a redirect) may use; node:http would throw a TypeError for others. */
const SCHEMES = new Set(['http:', 'https:']);

const MAX_REDIRECTS = 5;
const MAX_BACKOFF_MS = 10_000;
const MAX_RETRY_AFTER_MS = 60_000;
const DEFAULT_CERT_DIRS = ['/etc/containers/certs.d', '/etc/docker/certs.d'];
/** Connections kept per registry host; above the blob concurrency, so token and manifest requests never queue behind transfers. */
const MAX_SOCKETS = 16;
/** An idle keep-alive connection is closed after this long. */
const IDLE_SOCKET_MS = 30_000;
/** `dump()` reads at most this much of a body to keep its connection; a bigger rest costs less as a new connection. */
const DUMP_LIMIT = 128 << 10;
const BODY_HEADERS = new Set(['content-length', 'content-type', 'content-range', 'content-encoding']);

/**
 * Errors from a connection (not from the server's answer) that a new attempt may not meet, as
 * node:http reports them: a reset or a "socket hang up" (both ECONNRESET), a body cut short
 * ("aborted" is ECONNRESET too), a refused or timed-out connect, a write to a closed socket.
 */
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
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

/** `make(key)`'s promise, made once per key; forgotten if it fails, so a later call tries again. */
function memoized<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (p === undefined) {
    p = make();
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/** The host:port a reference's registry is served from (docker.io → registry-1.docker.io). */
export function registryHost(registry: string): string {
  return registry === DEFAULT_DOMAIN ? DOCKER_HUB_REGISTRY : registry;
}

/** How long the scheme probe waits for a plain-http answer before it tries https as well. */
const PLAIN_FIRST_MS = 200;

/** A keep-alive pool and the request function of its scheme. */
interface Pool {
  agent: HttpAgent;
  send: (url: URL, opts: RequestOptions) => ClientRequest;
}

/**
 * The CA certificates of NODE_EXTRA_CA_CERTS. bin/tsbuild passes that variable on as
 * TSBUILD_EXTRA_CA_CERTS so node does not parse its CA store at start-up; `forced` then, and
 * they must be added to the roots of every verified TLS connection here. Run as a library, node
 * has read NODE_EXTRA_CA_CERTS into its default store itself: they are needed here only when a
 * connection gets a CA list of its own (certs.d), which replaces that store. An unreadable file is
 * skipped with a warning, as node does (once: node already warned about its own variable).
 */
let extraCas: Promise<string[]> | undefined;
function extraCaCerts(): { forced: boolean; certs: Promise<string[]> } {
  const ours = process.env.TSBUILD_EXTRA_CA_CERTS;
  const file = ours || process.env.NODE_EXTRA_CA_CERTS;
  if (!file) return { forced: false, certs: Promise.resolve([]) };
  extraCas ??= readFile(file, 'utf8').then(
    (pem) => [pem],
    (e: NodeJS.ErrnoException) => {
      if (ours) process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${e.message}`);
      return [];
    },
  );
  return { forced: Boolean(ours), certs: extraCas.then((c) => [...c]) };
}

interface TlsOptions {
  ca?: string[];
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
}

/**
 * HTTP for the distribution API over node:http and node:https (a few ms to load where undici
 * cost ~70): one keep-alive Agent per scheme and
 * registry host, the https one carrying that host's TLS settings; redirects followed by hand (so
 * the Authorization header goes to the registry only, never to the storage host a blob redirect
 * points at); retries with exponential backoff on 5xx, 429 (Retry-After honoured) and connection
 * failures. Bodies stream both ways. A request fails with code STALLED when nothing moves for
 * `timeoutMs`: while connecting, sending or waiting for the answer (the socket's idle timeout),
 * and while its response body is read (a watchdog that does not count time the consumer spends
 * not reading). Bytes that keep trickling in do not hold a request forever either: an answer
 * read into memory must be complete within `deadlineMs` (an UnavailableError), a streamed blob
 * must keep above `minBytesPerSecond` (STALLED).
 */
export class HttpTransport {
  private readonly agents = new Map<string, Promise<Pool>>();
  private readonly tls = new Map<string, Promise<TlsOptions>>();
  private readonly bases = new Map<string, Promise<URL>>();
  /** Hosts whose scheme probe has answered. */
  private readonly probed = new Set<string>();
  /** WWW-Authenticate seen by the scheme probe of /v2/, so the first real request can authenticate up front. */
  readonly probeChallenges = new Map<string, string>();
  readonly retries: number;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly minBytesPerSecond: number;
  private readonly backoffMs: number;
  private readonly userAgent: string;

  constructor(private readonly opts: TransportOptions = {}) {
    this.retries = opts.retries ?? 4;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.minBytesPerSecond = opts.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
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
   * preferred and http used when the https attempt cannot connect; a certificate that does not
   * verify is an error unless TLS verification was turned off. One exception: a port that answers
   * plain http as a registry is taken to be http without an https attempt (see probe). Memoized
   * per host, so calling it early (see RegistryClient.warmUp) overlaps the probe with other work.
   */
  base(registry: string): Promise<URL> {
    const host = registryHost(registry);
    return memoized(this.bases, host, () =>
      this.probe(host).then((u) => {
        this.probed.add(host);
        return u;
      }),
    );
  }

  /**
   * `http://host/v2/` while the scheme probe of a loopback or --tls-verify=false host is under
   * way: the scheme the probe tries first. A request sent there at once, without credentials,
   * is answered about when the probe is, instead of a round trip after it (RegistryClient opens
   * upload sessions and asks about blobs so). undefined when no probe is under way or the host
   * is reached over https only.
   */
  plainGuess(registry: string): URL | undefined {
    const host = registryHost(registry);
    if (!this.bases.has(host) || this.probed.has(host)) return undefined;
    const verify = this.tlsVerify(host);
    return verify === false || (verify === undefined && isLoopback(host)) ? new URL(`http://${host}/v2/`) : undefined;
  }

  private async probe(host: string): Promise<URL> {
    const verify = this.tlsVerify(host);
    const https = new URL(`https://${host}/v2/`);
    const mayUseHttp = verify === false || (verify === undefined && isLoopback(host));
    if (!mayUseHttp) return https;
    // Over http first. A server that answers there as a registry (the API version header
    // distribution servers send on /v2/) speaks plain http on this port, where https cannot work,
    // so https is not tried: that spares loading node:https and a failing handshake (~7 ms here).
    // Any other outcome (a TLS server's 400, no connection, no answer within PLAIN_FIRST_MS) goes
    // as docker does: https first, the http answer used when https cannot connect.
    const http = new URL(`http://${host}/v2/`);
    const overHttp = this.once('GET', http, {}, undefined);
    const early = await Promise.race([overHttp.catch(() => undefined), sleep(PLAIN_FIRST_MS, undefined, { ref: false })]);
    if (early?.headers['docker-distribution-api-version'] !== undefined) {
      this.noteChallenge(host, early);
      await early.body.dump();
      return http;
    }
    const drop = () => void overHttp.then((r) => r.body.dump(), () => undefined);
    let r: HttpResponse;
    try {
      r = await this.once('GET', https, {}, undefined);
    } catch (e) {
      if (verify !== false && isCertificateError(e)) {
        drop();
        throw e;
      }
      // A connection that failed over http too is tried again, as any request is.
      r = await overHttp.catch((e2: unknown) => {
        if (!isRetryableError(e2)) throw e2;
        return this.send('GET', http, {}, undefined);
      });
      this.noteChallenge(host, r);
      await r.body.dump();
      return http;
    }
    drop();
    this.noteChallenge(host, r);
    await r.body.dump();
    return https;
  }

  private noteChallenge(host: string, r: HttpResponse): void {
    const h = r.headers['www-authenticate'];
    if (r.status === 401 && h !== undefined) this.probeChallenges.set(host, Array.isArray(h) ? h.join(', ') : h);
  }

  /**
   * The keep-alive pool for a URL's scheme and host[:port], and the request function that goes
   * with it. node:https and node:tls load with the first https URL, not with every command.
   */
  private agent(url: URL): Promise<Pool> {
    return memoized(this.agents, `${url.protocol}//${url.host}`, async () => {
      const common = { keepAlive: true, maxSockets: MAX_SOCKETS, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' as const };
      if (url.protocol !== 'https:') return { agent: new HttpAgent(common), send: httpRequest };
      const https = await import('node:https');
      return { agent: new https.Agent({ ...common, ...(await this.tlsOptions(url.host)) }), send: https.request };
    });
  }

  /**
   * TLS material as containers/image reads it from `<certDir>/<host[:port]>/`: every `*.crt` is
   * a CA, a `name.cert` with its `name.key` is a client certificate.
   */
  private tlsOptions(host: string): Promise<TlsOptions> {
    return memoized(this.tls, host, () => this.readTlsOptions(host));
  }

  private async readTlsOptions(host: string): Promise<TlsOptions> {
    const tls: TlsOptions = {};
    const cas: string[] = [];
    const dirs = this.opts.certDir !== undefined ? [this.opts.certDir] : DEFAULT_CERT_DIRS;
    for (const base of dirs) {
      const dir = join(base, host);
      let names: string[];
      try {
        names = (await readdir(dir)).sort();
      } catch {
        continue;
      }
      for (const n of names) {
        if (n.endsWith('.crt')) cas.push(await readFile(join(dir, n), 'utf8'));
        if (n.endsWith('.cert') && names.includes(`${n.slice(0, -'.cert'.length)}.key`)) {
          tls.cert = await readFile(join(dir, n), 'utf8');
          tls.key = await readFile(join(dir, `${n.slice(0, -'.cert'.length)}.key`), 'utf8');
        }
      }
      break;
    }
    if (this.tlsVerify(host) === false) {
      // Nothing is verified, so no CA is needed: an empty list spares node building its root
      // store (~20 ms here) for nothing. (NODE_EXTRA_CA_CERTS cost ~40 ms at start-up instead.)
      tls.rejectUnauthorized = false;
      tls.ca = [];
    } else {
      const extra = extraCaCerts();
      // Added to, not replacing, node's roots: a registry with a public certificate keeps working.
      if (extra.forced || cas.length > 0) tls.ca = [...(await import('node:tls')).rootCertificates, ...(await extra.certs), ...cas];
    }
    return tls;
  }

  /**
   * One exchange, following redirects. No retries.
   *
   * Credentials in the Authorization header go to the origin (scheme, host and port) of the first
   * URL only, and only when that URL is on `authHost` (default: any host): a redirect anywhere
   * else drops them for the rest of the exchange, as RFC 9110 §15.4 warns and as docker and
   * containers/image do; registries redirect blob GETs to object storage with a pre-signed URL,
   * which must not see them (and which an extra header breaks). A 307/308 would send the request
   * body again: it goes to the first URL's origin only (a token request's body carries the
   * identity token). Only http and https are followed: node:http throws a TypeError for any
   * other scheme, and a registry has no business pointing us at file:// or ftp://.
   *
   * `streamed`: the caller streams the response body to disk (a blob). The deadline then ends
   * with the response headers and the body is held to the minimum throughput instead; any other
   * exchange must be over, body and all, within `deadlineMs`.
   */
  async once(method: HttpMethod, url: URL, headers: Headers, body: BodySource | undefined, authHost?: string, streamed = false): Promise<HttpResponse> {
    let current = url;
    let m = method;
    let b = body;
    let hs = headers;
    let trusted: string | undefined = authHost === undefined || url.host === authHost ? url.origin : undefined;
    const deadline = Date.now() + this.deadlineMs;
    for (let i = 0; ; i++) {
      if (!SCHEMES.has(current.protocol)) {
        const what = `${method} ${redactUrl(url)}`;
        throw new FailedPreconditionError(
          i === 0 ? `${what}: only http and https are supported` : `${what}: redirected to ${printable(redactUrl(current))}, which is not http or https`,
        );
      }
      const h: Headers = { 'user-agent': this.userAgent, ...hs };
      if (current.origin !== trusted) {
        trusted = undefined;
        delete h.authorization;
      }
      // A streamed request body may take long to send: its deadline starts once it is sent.
      const left = typeof b === 'function' ? this.deadlineMs : Math.max(1, deadline - Date.now());
      const res = await this.exchange(m, current, h, b, left, streamed);
      const status = res.statusCode ?? 0;
      const loc = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(status) && typeof loc === 'string' && i < MAX_REDIRECTS) {
        await dump(res);
        let next: URL;
        try {
          next = new URL(loc, current);
        } catch {
          throw new FailedPreconditionError(`${method} ${redactUrl(url)}: redirected (${status}) to an invalid URL "${printable(loc, 100)}"`);
        }
        if (status === 303 || ((status === 301 || status === 302) && m !== 'HEAD')) {
          m = m === 'HEAD' ? 'HEAD' : 'GET';
          b = undefined;
          // The body's own headers describe a body that no longer goes out.
          hs = Object.fromEntries(Object.entries(hs).filter(([k]) => !BODY_HEADERS.has(k.toLowerCase())));
        } else if (b !== undefined && !(Buffer.isBuffer(b) && b.length === 0) && next.origin !== url.origin) {
          throw new FailedPreconditionError(
            `${method} ${redactUrl(url)}: redirected (${status}) to another host, ${printable(next.origin)}; the request body is not sent there`,
          );
        }
        current = next;
        continue;
      }
      const what = `${m} ${redactUrl(current)}`;
      const r = Object.assign(res, {
        text: async (cap = MAX_TEXT_BODY, label?: string) => (await readAll(res, cap, what, label)).toString('utf8'),
        buffer: (cap = MAX_TEXT_BODY, label?: string) => readAll(res, cap, what, label),
        dump: () => dump(res),
      });
      return { status, headers: res.headers, body: r, url: current };
    }
  }

  /**
   * One request and its response headers. The socket's idle timeout watches connecting, sending
   * and waiting for the answer; once the answer is there, `watchBody` takes over. A timer fails
   * the exchange `deadlineMs` after it was sent (after its body was, for a streamed body), at the
   * response headers for a `streamed` response, else when the response body ends.
   */
  private async exchange(method: HttpMethod, url: URL, headers: Headers, body: BodySource | undefined, deadlineMs: number, streamed: boolean): Promise<IncomingMessage> {
    const { agent, send } = await this.agent(url);
    const ms = this.timeoutMs;
    const what = `${method} ${redactUrl(url)}`;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(url, { method, headers, agent, timeout: ms });
      let answered: IncomingMessage | undefined;
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        if (timer !== undefined) return;
        timer = setTimeout(() => {
          const e = new UnavailableError(`${what}: no complete answer within ${deadlineMs} ms`);
          if (answered !== undefined) {
            // A body nobody reads yet must not crash the process with an unhandled 'error'; a
            // reader that comes later still gets the error (the stream is destroyed with it).
            answered.on('error', () => undefined);
            answered.destroy(e);
          } else {
            req.destroy(e);
          }
        }, deadlineMs);
        timer.unref();
      };
      const disarm = () => clearTimeout(timer);
      if (typeof body === 'function') req.once('finish', arm);
      else arm();
      req.on('timeout', () => req.destroy(stalled(what, ms)));
      // After the answer, a failure of the request side (the server closed while we were still
      // sending) is the response body's to report, if it is cut short.
      req.on('error', (e) => {
        if (answered === undefined) {
          disarm();
          reject(e);
        }
      });
      req.on('response', (res: IncomingMessage) => {
        answered = res;
        req.setTimeout(0);
        if (streamed) {
          disarm();
          watchBody(res, ms, what, Math.max(1, Math.ceil((this.minBytesPerSecond * ms) / 1000)));
        } else {
          arm();
          res.once('end', disarm);
          res.once('close', disarm);
          watchBody(res, ms, what, 1);
        }
        resolve(res);
      });
      if (body === undefined) {
        req.end();
      } else if (typeof body === 'function') {
        let src: Readable;
        try {
          src = body();
        } catch (e) {
          req.destroy(e as Error);
          return;
        }
        // Not pipeline(…, req): pipeline would abort() the request, turning the source's own
        // error (or the watchdog's STALLED) into a retryable "socket hang up". The request fails
        // with the source's error instead, and a request that ends or fails closes the source.
        const out = pipeline(src, stallWatchdog(ms, what), (err) => {
          if (err) req.destroy(err);
        });
        out.pipe(req);
        req.once('close', () => out.destroy());
      } else {
        req.setHeader('content-length', body.length);
        req.end(body);
      }
    });
  }

  /**
   * `once` with retries: connection failures, 5xx and 429 are tried again after 250 ms, 500 ms,
   * 1 s … (or the Retry-After the server asked for, capped at a minute). The last answer is
   * returned as is; the last connection error is thrown as UnavailableError naming the URL.
   * `authHost` and `streamed` as for `once`.
   */
  async send(
    method: HttpMethod,
    url: URL,
    headers: Headers,
    body: BodySource | undefined,
    authHost?: string,
    retry = true,
    streamed = false,
  ): Promise<HttpResponse> {
    const retries = retry ? this.retries : 0;
    for (let attempt = 0; ; attempt++) {
      let r: HttpResponse;
      try {
        r = await this.once(method, url, headers, body, authHost, streamed);
      } catch (e) {
        if (attempt < retries && isRetryableError(e)) {
          await sleep(this.backoff(attempt));
          continue;
        }
        if (isRetryableError(e) && retry) {
          throw new UnavailableError(`${method} ${redactUrl(url)}: ${describeError(e)} (after ${attempt + 1} attempts)`, { cause: e });
        }
        // Failing to reach the server at all (a name that does not resolve, a certificate
        // refused) names the URL too. A body source's own error goes as it is.
        const syscall = (e as { syscall?: unknown }).syscall;
        if (retry && (syscall === 'getaddrinfo' || syscall === 'connect' || isCertificateError(e))) {
          throw new UnavailableError(`${method} ${redactUrl(url)}: ${describeError(e)}`, { cause: e });
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

  /** Destroys every connection, idle or not, so nothing keeps the process alive. */
  async close(): Promise<void> {
    const agents = await Promise.allSettled(this.agents.values());
    this.agents.clear();
    for (const a of agents) if (a.status === 'fulfilled') a.value.agent.destroy();
  }
}

function stalled(what: string, ms: number): Error {
  return Object.assign(new Error(`${what}: no progress for ${ms} ms`), { code: 'STALLED' });
}

/**
 * Fails a response body with STALLED when fewer than `minBytes` arrive within `ms` while the
 * consumer is waiting for them (1: no byte at all; more: the throughput floor of a streamed
 * blob). Time the consumer spends not reading (bytes sit in the body's buffer, the socket is
 * paused) is not the server's doing. Polled a few times per period from the socket's byte
 * count, so the body's data path carries no per-chunk work.
 */
function watchBody(res: IncomingMessage, ms: number, what: string, minBytes: number): void {
  const socket = res.socket;
  if (socket === null || res.complete) return;
  let seen = socket.bytesRead;
  let idleSince = Date.now();
  const step = Math.max(10, Math.floor(ms / 4));
  const timer = setInterval(() => {
    // The socket goes back to the pool (res.socket = null) once the body ended.
    const s = res.socket;
    if (s === null || res.complete || res.destroyed) {
      clearInterval(timer);
      return;
    }
    const now = Date.now();
    if (s.bytesRead - seen >= minBytes || res.readableLength > 0) {
      seen = s.bytesRead;
      idleSince = now;
    } else if (now - idleSince >= ms) {
      clearInterval(timer);
      const got = s.bytesRead - seen;
      res.destroy(
        got === 0
          ? stalled(what, ms)
          : Object.assign(new Error(`${what}: ${got} bytes in ${ms} ms, below the floor of ${Math.round((minBytes * 1000) / ms)} bytes/s`), { code: 'STALLED' }),
      );
    }
  }, step);
  timer.unref();
  const stop = () => clearInterval(timer);
  res.once('end', stop);
  res.once('close', stop);
}

/** "4 MiB", "512 KiB", "100 bytes": a cap as messages name it. */
export function formatCap(n: number): string {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n >> 20} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n >> 10} KiB`;
  return `${n} bytes`;
}

/**
 * A response body read into memory, `cap` bytes at most: a bigger one (announced by
 * Content-Length, or found while reading) is dropped with one line naming the request and the
 * cap. A body cut short, stalled or past its deadline is an UnavailableError naming the request.
 */
async function readAll(res: IncomingMessage, cap: number, what: string, label?: string): Promise<Buffer> {
  const tooBig = (n?: number) =>
    new InvalidArgumentError(`${what}: the answer${n !== undefined ? ` (${n} bytes)` : ''} is over the ${formatCap(cap)}${label !== undefined ? ` ${label}` : ''} limit`);
  const announced = Number(res.headers['content-length']);
  if (Number.isFinite(announced) && announced > cap) {
    res.on('error', () => undefined);
    res.destroy();
    throw tooBig(announced);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const raw of res) {
      const c = raw as Buffer;
      n += c.length;
      if (n > cap) throw tooBig();
      chunks.push(c);
    }
  } catch (e) {
    if (isTsbuildError(e)) throw e;
    const said = describeError(e);
    throw new UnavailableError(said.startsWith(what) ? said : `${what}: ${said}`, { cause: e });
  }
  return Buffer.concat(chunks, n);
}

/**
 * Reads a body we do not need so its connection can carry the next request; a body bigger than
 * DUMP_LIMIT is cut (closing the connection) instead. Never fails: the body was not wanted.
 */
function dump(res: IncomingMessage): Promise<void> {
  if (res.readableEnded || res.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    let left = DUMP_LIMIT;
    res.on('error', () => undefined);
    res.once('end', () => resolve());
    res.once('close', () => resolve());
    res.on('data', (c: Buffer) => {
      left -= c.length;
      if (left < 0) res.destroy();
    });
    res.resume();
  });
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

/**
 * Fails a stream that passes no data for `ms`: a stalled upload (a server that stopped reading,
 * a source that produces nothing) would otherwise hang forever once the server answered early,
 * since the socket's idle timeout watches the exchange only until the answer.
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
    if (timer !== undefined) {
      timer.refresh();
      return;
    }
    timer = setTimeout(() => t.destroy(stalled(what, ms)), ms);
    timer.unref();
  };
  arm();
  return t;
}
