import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import { authFileProvider, logout, parseCreds, storeCredentials } from './auth-provider.js';

let dir: string;
const saved = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR, DOCKER_CONFIG: process.env.DOCKER_CONFIG };
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-authfile-'));
  process.env.XDG_RUNTIME_DIR = join(dir, 'run');
  process.env.DOCKER_CONFIG = join(dir, 'docker');
});
afterEach(async () => {
  for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
  else process.env[k] = v;
  await rm(dir, { recursive: true, force: true });
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('authFileProvider', () => {
  it('prefers --creds, splitting at the first colon', async () => {
    expect(await authFileProvider({ creds: 'u:p:q' }).credentials('any')).toEqual({ username: 'u', password: 'p:q' });
    expect(() => parseCreds('nocolon')).toThrow(InvalidArgumentError);
  });
  it('reads the podman auth file first, then docker config.json (docker.io under its v1 URL, identity tokens)', async () => {
    await storeCredentials('quay.io', { username: 'pod', password: 'man' });
    expect(JSON.parse(await readFile(join(dir, 'run', 'containers', 'auth.json'), 'utf8'))).toEqual({ auths: { 'quay.io': { auth: b64('pod:man') } } });
    expect((await stat(join(dir, 'run', 'containers', 'auth.json'))).mode & 0o777).toBe(0o600);
    await mkdir(join(dir, 'docker'));
    await writeFile(
      join(dir, 'docker', 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hub:pw') },
          'quay.io': { auth: b64('docker:shadowed') },
          'https://ghcr.io': { identitytoken: 'tok' },
        },
      }),
    );
    const p = authFileProvider();
    expect(await p.credentials('docker.io')).toEqual({ username: 'hub', password: 'pw' });
    expect(await p.credentials('quay.io')).toEqual({ username: 'pod', password: 'man' });
    expect(await p.credentials('ghcr.io')).toEqual({ identityToken: 'tok' });
    expect(await p.credentials('example.com')).toBeUndefined();
  });
  it('--authfile replaces the default files', async () => {
    await storeCredentials('quay.io', { username: 'pod', password: 'man' });
    const other = join(dir, 'other.json');
    await writeFile(other, JSON.stringify({ auths: { 'r.example:5000': { auth: b64('a:b') } } }));
    const p = authFileProvider({ authFile: other });
    expect(await p.credentials('quay.io')).toBeUndefined();
    expect(await p.credentials('r.example:5000')).toEqual({ username: 'a', password: 'b' });
  });
  it('logout removes only that registry', async () => {
    await storeCredentials('a.example', { username: 'x', password: 'y' });
    await storeCredentials('b.example', { username: 'x', password: 'y' });
    await logout('a.example');
    expect(Object.keys(JSON.parse(await readFile(join(dir, 'run', 'containers', 'auth.json'), 'utf8')).auths)).toEqual(['b.example']);
  });
});
