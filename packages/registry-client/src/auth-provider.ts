import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { InvalidArgumentError, NotFoundError, FailedPreconditionError, DEFAULT_DOMAIN } from '@tsbuild/oci';

export type Credentials = { username: string; password: string } | { identityToken: string };

/**
 * Where credentials for a registry come from. Called with the registry as references name it
 * (`docker.io`, `127.0.0.1:5000`); undefined means anonymous.
 */
export interface AuthProvider {
  credentials(registry: string): Promise<Credentials | undefined>;
}

/** A provider that always answers with the same credentials (login verification, tests). */
export function staticAuthProvider(creds: Credentials | undefined): AuthProvider {
  return { credentials: () => Promise.resolve(creds) };
}

/** ${XDG_RUNTIME_DIR:-/run/user/<uid>}/containers/auth.json, where podman keeps logins. */
export function defaultAuthFile(): string {
  const runtime = process.env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`;
  return join(runtime, 'containers', 'auth.json');
}

function dockerConfigFile(): string {
  const dir = process.env.DOCKER_CONFIG ?? join(homedir(), '.docker');
  return join(dir, 'config.json');
}

interface AuthEntry {
  auth?: string;
  identitytoken?: string;
  username?: string;
  password?: string;
}

interface AuthFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

/** The keys an auth file may use for a registry: docker wrote docker.io as its v1 index URL. */
function keysFor(registry: string): string[] {
  if (registry === DEFAULT_DOMAIN || registry === 'index.docker.io' || registry === 'registry-1.docker.io') {
    return ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/'];
  }
  return [registry];
}

/** A key as written (`https://host:5000/v1/`, `host:5000`) reduced to host[:port]. */
function normaliseKey(key: string): string {
  return key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
}

function findEntry<T>(map: Record<string, T> | undefined, registry: string): T | undefined {
  if (map === undefined) return undefined;
  const keys = keysFor(registry);
  for (const k of keys) if (map[k] !== undefined) return map[k];
  for (const [k, v] of Object.entries(map)) if (keys.includes(normaliseKey(k))) return v;
  return undefined;
}

function decodeEntry(e: AuthEntry, file: string, registry: string): Credentials | undefined {
  if (e.identitytoken) return { identityToken: e.identitytoken };
  if (e.auth) {
    const plain = Buffer.from(e.auth, 'base64').toString('utf8');
    const i = plain.indexOf(':');
    if (i < 0) throw new InvalidArgumentError(`${file}: the auth entry for ${registry} is not base64 "user:password"`);
    return { username: plain.slice(0, i), password: plain.slice(i + 1) };
  }
  if (e.username !== undefined && e.password !== undefined) return { username: e.username, password: e.password };
  return undefined;
}

async function readAuthFile(file: string): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as AuthFile;
  } catch (e) {
    throw new InvalidArgumentError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * `docker-credential-<helper> get` with the server on stdin, as the docker credential helper
 * protocol defines; a Username of `<token>` marks an identity token. "Not found" is anonymous.
 */
async function credentialHelper(helper: string, registry: string): Promise<Credentials | undefined> {
  const server = registry === DEFAULT_DOMAIN ? 'https://index.docker.io/v1/' : registry;
  // node:child_process loads here, not with every pull and push (~2 ms).
  const { execFile } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = execFile(`docker-credential-${helper}`, ['get'], { timeout: 30_000 }, (err, stdout) => {
      if (err) {
        if (/credentials not found/i.test(stdout) || (err as { code?: unknown }).code === 1) {
          resolve(undefined);
          return;
        }
        // The helper's output may hold secrets: name the helper and the registry only.
        reject(new FailedPreconditionError(`credential helper docker-credential-${helper} failed for ${registry}: ${(err as { code?: unknown }).code === 'ENOENT' ? 'not installed' : `exit ${String((err as { code?: unknown }).code)}`}`));
        return;
      }
      try {
        const j = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (j.Username === '<token>' && j.Secret) resolve({ identityToken: j.Secret });
        else if (j.Username !== undefined && j.Secret !== undefined) resolve({ username: j.Username, password: j.Secret });
        else resolve(undefined);
      } catch {
        reject(new FailedPreconditionError(`credential helper docker-credential-${helper} answered something that is not JSON for ${registry}`));
      }
    });
    child.stdin?.end(server);
  });
}

async function fromFile(file: string, registry: string): Promise<Credentials | undefined> {
  const f = await readAuthFile(file);
  if (f === undefined) return undefined;
  const helper = findEntry(f.credHelpers, registry);
  if (helper !== undefined) return credentialHelper(helper, registry);
  const entry = findEntry(f.auths, registry);
  const creds = entry !== undefined ? decodeEntry(entry, file, registry) : undefined;
  if (creds !== undefined) return creds;
  if (f.credsStore) return credentialHelper(f.credsStore, registry);
  return undefined;
}

/** Parses `--creds user:password` (the password may hold colons; an empty one is asked for by the CLI). */
export function parseCreds(creds: string): { username: string; password: string } {
  const i = creds.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError('invalid --creds: want USERNAME:PASSWORD');
  return { username: creds.slice(0, i), password: creds.slice(i + 1) };
}

/**
 * Credentials as podman and docker find them: `creds` (`user:pass`) first; then `authFile`
 * alone when given (podman's --authfile replaces the defaults); otherwise
 * ${XDG_RUNTIME_DIR}/containers/auth.json, then ~/.docker/config.json (credHelpers for the
 * registry, its auths entry, then credsStore).
 */
export function authFileProvider(opts: { authFile?: string; creds?: string } = {}): AuthProvider {
  const fixed = opts.creds !== undefined ? parseCreds(opts.creds) : undefined;
  return {
    async credentials(registry: string): Promise<Credentials | undefined> {
      if (fixed !== undefined) return fixed;
      const files = opts.authFile !== undefined ? [opts.authFile] : [defaultAuthFile(), dockerConfigFile()];
      for (const f of files) {
        const c = await fromFile(f, registry);
        if (c !== undefined) return c;
      }
      return undefined;
    },
  };
}

/** Rewrites an auth file atomically (temp + rename), mode 0600 in a 0700 directory. */
async function writeAuthFile(file: string, content: AuthFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(content, null, '\t')}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

/** Stores credentials for `registry` in the auth file (podman's format: base64 "user:pass"). */
export async function storeCredentials(registry: string, creds: { username: string; password: string }, opts: { authFile?: string } = {}): Promise<void> {
  const file = opts.authFile ?? defaultAuthFile();
  const content = (await readAuthFile(file)) ?? {};
  content.auths = { ...(content.auths ?? {}) };
  for (const k of Object.keys(content.auths)) if (keysFor(registry).includes(normaliseKey(k))) delete content.auths[k];
  content.auths[registry] = { auth: Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64') };
  await writeAuthFile(file, content);
}

/**
 * Removes the stored credentials for `registry` (podman logout). NotFoundError when the file
 * holds none for it.
 */
export async function logout(registry: string, opts: { authFile?: string } = {}): Promise<void> {
  const file = opts.authFile ?? defaultAuthFile();
  const content = await readAuthFile(file);
  const keys = Object.keys(content?.auths ?? {}).filter((k) => keysFor(registry).includes(normaliseKey(k)));
  if (content === undefined || keys.length === 0) throw new NotFoundError(`not logged in to ${registry} (${file})`);
  for (const k of keys) delete content.auths![k];
  await writeAuthFile(file, content);
}
