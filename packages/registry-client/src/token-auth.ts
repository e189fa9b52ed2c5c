import { FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import type { AuthProvider, Credentials } from './auth-provider.js';
import { MAX_TEXT_BODY, type HttpTransport } from './http-transport.js';
import { parseErrorBody, printable, redactUrl } from './registry-error.js';
import { parseWwwAuthenticate, type Challenge } from './www-authenticate.js';

interface CachedToken {
  header: string;
  expiresAt: number;
}

/** Tokens are renewed this long before they expire, so one does not lapse mid-request. */
const EXPIRY_MARGIN_MS = 10_000;
/** The token spec's default lifetime when the server names none. */
const DEFAULT_TOKEN_SECONDS = 60;
/**
 * A token response is a small JSON object; containers/image reads at most 1 MiB of it
 * (iolimits.MaxAuthTokenBodySize, after CVE-2020-1702), and so do we.
 */
const MAX_TOKEN_BODY = MAX_TEXT_BODY;

/**
 * Authorization for one client, per registry host:
 *   1. The first request goes out with what we know: nothing, or the header for a challenge
 *      learnt earlier (from the /v2/ probe or a previous 401).
 *   2. A 401 carries WWW-Authenticate. `Basic` → the provider's username/password. `Bearer` →
 *      the token flow of the distribution token spec: GET realm?service=…&scope=… with basic
 *      credentials (or anonymously), or POST grant_type=refresh_token for an identity token,
 *      as docker does. Tokens are cached per (host, scopes) until shortly before they expire.
 *   3. The request is sent once more with the new header; a 401 then is the caller's error.
 * Credentials never leave this class except as Authorization headers to the registry and its
 * token realm (never to where either redirects: see HttpTransport.once), and never appear in an
 * error message: `scrub` takes them out of what a server says back.
 */
export class Authenticator {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  private readonly creds = new Map<string, Promise<Credentials | undefined>>();
  /** How many tokens were fetched; tests check that the cache works. */
  tokenFetches = 0;
  /** Every secret seen (passwords, identity tokens, their Basic encodings, bearer tokens), for `scrub`. */
  private readonly secrets = new Set<string>();

  constructor(
    private readonly transport: HttpTransport,
    private readonly provider: AuthProvider | undefined,
  ) {}

  credentials(registry: string): Promise<Credentials | undefined> {
    let c = this.creds.get(registry);
    if (c === undefined) {
      c = this.provider !== undefined ? this.provider.credentials(registry) : Promise.resolve(undefined);
      c = c.then((found) => {
        if (found !== undefined && 'identityToken' in found) this.secrets.add(found.identityToken);
        else if (found !== undefined) {
          this.secrets.add(found.password);
          this.secrets.add(basic(found));
        }
        return found;
      });
      this.creds.set(registry, c);
      c.catch(() => this.creds.delete(registry));
    }
    return c;
  }

  /**
   * `text` with every secret this client holds replaced by `***`: a hostile server may echo the
   * credentials it was sent in its error message, which we print.
   */
  scrub(text: string): string {
    let out = text;
    for (const s of this.secrets) if (s !== '') out = out.split(s).join('***');
    return out;
  }

  /** The Authorization header for a request with these scopes, when the host's challenge is known. */
  async header(registry: string, host: string, scopes: string[]): Promise<string | undefined> {
    let ch = this.challenges.get(host);
    if (ch === undefined) {
      const probed = this.transport.probeChallenges.get(host);
      if (probed !== undefined) ch = this.learn(host, probed);
    }
    if (ch === undefined) return undefined;
    return this.headerFor(registry, host, ch, scopes, false);
  }

  /**
   * After a 401: learns the challenge, drops the cached token for these scopes and gets a new
   * one. undefined when there is nothing new to try (basic auth without credentials).
   */
  async unauthorized(registry: string, host: string, scopes: string[], wwwAuthenticate: string | undefined): Promise<string | undefined> {
    const ch = wwwAuthenticate !== undefined ? this.learn(host, wwwAuthenticate) : this.challenges.get(host);
    if (ch === undefined) return undefined;
    const extra = ch.params.scope !== undefined ? ch.params.scope.split(' ') : [];
    return this.headerFor(registry, host, ch, [...new Set([...scopes, ...extra])], true);
  }

  private learn(host: string, header: string): Challenge | undefined {
    const all = parseWwwAuthenticate(header);
    const ch = all.find((c) => c.scheme === 'Bearer') ?? all.find((c) => c.scheme === 'Basic');
    if (ch !== undefined) this.challenges.set(host, ch);
    return ch;
  }

  private async headerFor(registry: string, host: string, ch: Challenge, scopes: string[], refresh: boolean): Promise<string | undefined> {
    const creds = await this.credentials(registry);
    if (ch.scheme === 'Basic') {
      if (creds === undefined || !('username' in creds)) return undefined;
      return `Basic ${basic(creds)}`;
    }
    const key = `${host} ${[...scopes].sort().join(' ')}`;
    const cached = this.tokens.get(key);
    if (cached !== undefined && !refresh) {
      const t = await cached.catch(() => undefined);
      if (t !== undefined && t.expiresAt > Date.now() + EXPIRY_MARGIN_MS) return t.header;
    }
    const p = this.fetchToken(registry, ch, scopes, creds);
    this.tokens.set(key, p);
    p.catch(() => this.tokens.delete(key));
    return (await p).header;
  }

  private async fetchToken(registry: string, ch: Challenge, scopes: string[], creds: Credentials | undefined): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (realm === undefined) throw new InvalidArgumentError(`registry ${registry} sent a Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new InvalidArgumentError(`registry ${registry} sent a Bearer challenge with a bad realm "${printable(realm, 100)}"`);
    }
    this.tokenFetches++;
    let r;
    if (creds !== undefined && 'identityToken' in creds) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'tsbuild' });
      if (ch.params.service !== undefined) form.set('service', ch.params.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      r = await this.transport.send('POST', url, { 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(form.toString()), url.host);
    } else {
      if (ch.params.service !== undefined) url.searchParams.set('service', ch.params.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (creds !== undefined) {
        url.searchParams.set('account', creds.username);
        headers.authorization = `Basic ${basic(creds)}`;
      }
      // The realm named by the registry gets the credentials, as docker sends them; where it
      // redirects does not (url.host as the only host they go to).
      r = await this.transport.send('GET', url, headers, undefined, url.host);
    }
    const text = await r.body.text(MAX_TOKEN_BODY, 'token response');
    if (r.status !== 200) {
      const { code, message } = parseErrorBody(text);
      const said = code !== undefined ? ` ${printable(this.scrub(code), 64)}${message !== undefined ? `: ${printable(this.scrub(message))}` : ''}` : '';
      throw Object.assign(
        new FailedPreconditionError(
          `token request to ${redactUrl(url)} for ${registry} failed: ${r.status}${said}${r.status === 401 ? ' (check your credentials)' : ''}`,
        ),
        { status: r.status },
      );
    }
    let j: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      j = JSON.parse(text) as typeof j;
    } catch {
      throw new FailedPreconditionError(`token server ${redactUrl(url)} for ${registry} answered something that is not JSON`);
    }
    const token = typeof j === 'object' && j !== null ? (j.token ?? j.access_token) : undefined;
    if (typeof token !== 'string' || token === '') throw new FailedPreconditionError(`token server ${redactUrl(url)} for ${registry} sent no token`);
    // It becomes a header value: anything else would make node:http throw a TypeError (RFC 6750 b64token is narrower still).
    if (!/^[\x21-\x7e]+$/.test(token)) throw new FailedPreconditionError(`token server ${redactUrl(url)} for ${registry} sent a token that is not printable ASCII`);
    const issued = j.issued_at !== undefined && !Number.isNaN(Date.parse(j.issued_at)) ? Math.min(Date.parse(j.issued_at), Date.now()) : Date.now();
    const seconds = typeof j.expires_in === 'number' && j.expires_in > 0 ? j.expires_in : DEFAULT_TOKEN_SECONDS;
    this.secrets.add(token);
    return { header: `Bearer ${token}`, expiresAt: issued + seconds * 1000 };
  }
}

function basic(creds: { username: string; password: string }): string {
  return Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64');
}
