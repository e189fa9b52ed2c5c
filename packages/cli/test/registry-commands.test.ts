import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRegistry, makePki, startRegistry } from '../../registry-client/test/registry-server.js';
import { HELLO, IMAGE_ID_LINE, REPO, TestStore } from './harness.js';

describe('push, pull and FROM through a real registry', () => {
  const t = new TestStore();
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
    await t.importBusybox();
  });
  afterAll(async () => {
    await reg.stop();
    await t.cleanup();
  });

  it('push then pull keeps the manifest digest and image ID; FROM pulls what the store lacks', async () => {
    const built = await t.run(['build', '-q', '-t', 'hello', HELLO]);
    expect(built.code).toBe(0);
    const dest = `127.0.0.1:${reg.port}/demo/hello:1`;
    const pushed = await t.run(['push', '--tls-verify=false', 'hello', dest]);
    expect(pushed.stderr).toContain(`Pushed ${dest}`);
    expect(pushed.code).toBe(0);
    const digest = pushed.stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // the base image too, so that a fresh store can build FROM the registry
    expect((await t.run(['push', '--tls-verify=false', '-q', 'busybox', `127.0.0.1:${reg.port}/library/busybox:latest`])).code).toBe(0);

    const fresh = new TestStore();
    try {
      const pulled = await fresh.run(['pull', '--tls-verify=false', dest]);
      expect(pulled.code).toBe(0);
      expect(pulled.stdout.trim()).toBe(built.stdout.trim()); // same image ID
      expect(pulled.stderr).toMatch(/Copied blob [0-9a-f]{12}/);
      const inspect = JSON.parse((await fresh.run(['inspect', dest])).stdout);
      expect(inspect.Digest).toBe(digest);
      const ctx = await fresh.context({ Dockerfile: `FROM 127.0.0.1:${reg.port}/library/busybox\nRUN echo from-registry > /r\n` });
      const b = await fresh.run(['build', '--tls-verify=false', '-t', 'child', ctx]);
      expect(b.stderr).toBe('');
      expect(b.code).toBe(0);
      expect(b.stdout.trim().split('\n').at(-1)).toMatch(IMAGE_ID_LINE);
      // --pull=never refuses what the store lacks
      const ctx2 = await fresh.context({ Dockerfile: `FROM 127.0.0.1:${reg.port}/demo/other\n` });
      expect((await fresh.run(['build', '--pull=never', ctx2])).stderr).toMatch(/image not known in the local store \(and --pull=never\)/);
    } finally {
      await fresh.cleanup();
    }
  });

  it('push --format docker writes a Docker schema 2 manifest', async () => {
    const dest = `127.0.0.1:${reg.port}/demo/docker:1`;
    const r = await t.run(['push', '--tls-verify=false', '-q', '--format', 'docker', 'busybox', dest]);
    expect(r.code).toBe(0);
    const fresh = new TestStore();
    try {
      expect((await fresh.run(['pull', '-q', '--tls-verify=false', dest])).code).toBe(0);
      expect(JSON.parse((await fresh.run(['inspect', dest])).stdout).Manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    } finally {
      await fresh.cleanup();
    }
  });

  it('a missing image is one line naming the registry\'s answer', async () => {
    const r = await t.run(['pull', '--tls-verify=false', `127.0.0.1:${reg.port}/demo/nothere:1`]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/MANIFEST_UNKNOWN|404/);
  });
});

describe('login and logout', () => {
  const t = new TestStore();
  let reg: RunningRegistry;
  let pkiDir: string;
  let caCert: string;
  let unrelatedCa: string;
  beforeAll(async () => {
    const pki = await makePki();
    pkiDir = pki.dir;
    caCert = pki.caCert;
    unrelatedCa = pki.tokenCert;
    reg = await startRegistry({ tls: { cert: pki.serverCert, key: pki.serverKey }, htpasswd: { users: { ci: 's3cret' } } });
  });
  afterAll(async () => {
    await reg.stop();
    await t.cleanup();
    await fsp.rm(pkiDir, { recursive: true, force: true });
  });

  it('stores credentials in the auth file (0600), uses them, and removes them on logout', async () => {
    const authfile = path.join(t.tmp, 'auth.json');
    const host = `127.0.0.1:${reg.port}`;
    const bad = await t.run(['login', '--tls-verify=false', '--authfile', authfile, '-u', 'ci', '--password-stdin', host], { input: 'wrong\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).not.toContain('wrong');
    const ok = await t.run(['login', '--tls-verify=false', '--authfile', authfile, '-u', 'ci', '--password-stdin', host], { input: 's3cret\n' });
    expect(ok.stdout).toBe('Login Succeeded!\n');
    expect((await fsp.stat(authfile)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await fsp.readFile(authfile, 'utf8')).auths[host].auth).toBe(Buffer.from('ci:s3cret').toString('base64'));
    await t.importBusybox();
    expect((await t.run(['push', '-q', '--tls-verify=false', '--authfile', authfile, 'busybox', `${host}/x/y:1`])).code).toBe(0);
    expect((await t.run(['logout', '--authfile', authfile, host])).code).toBe(0);
    const denied = await t.run(['push', '-q', '--tls-verify=false', '--authfile', authfile, 'busybox', `${host}/x/y:2`]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/401|UNAUTHORIZED|unauthorized/i);
  });

  it('trusts the CA certificates of NODE_EXTRA_CA_CERTS, which bin/tsbuild hands over to the registry client', async () => {
    const host = `127.0.0.1:${reg.port}`;
    const args = ['login', '--authfile', path.join(t.tmp, 'ca-auth.json'), '-u', 'ci', '--password-stdin', host];
    const untrusted = await t.run(args, { input: 's3cret\n', env: { NODE_EXTRA_CA_CERTS: '' } });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/certificate/i);
    const trusted = await t.run(args, { input: 's3cret\n', env: { NODE_EXTRA_CA_CERTS: caCert } });
    expect(trusted.stderr).toBe('');
    expect(trusted.stdout).toBe('Login Succeeded!\n');
    const missing = await t.run(args, { input: 's3cret\n', env: { NODE_EXTRA_CA_CERTS: path.join(t.tmp, 'no-such-ca.pem') } });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/Ignoring extra certs from `.*no-such-ca\.pem`, load failed/);
    // Run by node directly (node reads NODE_EXTRA_CA_CERTS into its own store), with a certs.d
    // that gives this host an unrelated CA: that list replaces node's store, so it must carry
    // NODE_EXTRA_CA_CERTS too.
    const certDir = path.join(t.tmp, 'certs.d');
    await fsp.mkdir(path.join(certDir, host), { recursive: true });
    await fsp.copyFile(unrelatedCa, path.join(certDir, host, 'ca.crt'));
    const direct = spawnSync(process.execPath, [path.join(REPO, 'packages/cli/bin/run.cjs'), ...args, '--cert-dir', certDir], {
      input: 's3cret\n',
      encoding: 'utf8',
      env: { ...process.env, TSBUILD_ROOT: t.root, NODE_EXTRA_CA_CERTS: caCert, TSBUILD_EXTRA_CA_CERTS: '' },
    });
    expect(direct.stderr).toBe('');
    expect(direct.stdout).toBe('Login Succeeded!\n');
  });
});
