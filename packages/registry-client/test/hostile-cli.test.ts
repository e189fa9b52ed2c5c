import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fakeImage, serveImage, stallingManifest, startServer, type TestServer } from './hostile-registry.js';
import { tempDir } from './registry-server.js';

/**
 * `tsbuild pull` (bin/tsbuild, as users run it; built by `npm run build`) against a hostile
 * registry: each failure is one line on stderr and exit status 1, never a stack trace, and the
 * store stays usable.
 */

const BIN = resolve(fileURLToPath(import.meta.url), '../../../cli/bin/tsbuild');

let reg: TestServer;
let dir: string;
let n = 0;

beforeAll(async () => {
  reg = await startServer('127.0.0.1');
  dir = await tempDir('tsbuild-hostile-cli-');
});
afterEach(() => {
  reg.handle = (_q, res) => res.writeHead(404).end();
});
afterAll(async () => {
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

function tsbuild(root: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(BIN, args, { env: { ...process.env, TSBUILD_ROOT: root }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** Pulls into a fresh store: exit 1, exactly one line on stderr; then `images` still works and lists nothing. */
async function pullFails(args: string[]): Promise<string> {
  const root = join(dir, `store-${n++}`);
  const r = await tsbuild(root, ['pull', '-q', ...args, `${reg.host}/evil/img:v1`]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^Error: [^\n]+\n$/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const images = await tsbuild(root, ['images', '--format', 'json']);
  expect(images.code).toBe(0);
  expect(JSON.parse(images.stdout)).toEqual([]);
  return r.stderr;
}

describe('tsbuild pull from a hostile registry', () => {
  it('a blob redirect to file:// is one line naming the URL, exit 1', async () => {
    const img = fakeImage();
    reg.handle = (req, res) => {
      if (req.url?.includes('/blobs/')) {
        res.writeHead(307, { location: 'file:///etc/passwd' }).end();
        return;
      }
      if (!serveImage(img, req, res)) res.writeHead(404).end();
    };
    const line = await pullFails([]);
    expect(line).toContain('file:///etc/passwd');
    expect(line).toContain(`http://${reg.host}/v2/evil/img/blobs/sha256:`);
  });

  it('a manifest that stalls is one line (an UnavailableError) after --registry-timeout, exit 1', async () => {
    reg.handle = stallingManifest;
    const t0 = Date.now();
    const line = await pullFails(['--registry-timeout', '1']);
    expect(line).toContain(`http://${reg.host}/v2/evil/img/manifests/v1: no progress for 1000 ms`);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('a config that is not JSON is one line naming registry, repository and digest; nothing is named', async () => {
    const img = fakeImage({ config: Buffer.from('not JSON at all') });
    reg.handle = (req, res) => {
      if (!serveImage(img, req, res)) res.writeHead(404).end();
    };
    const line = await pullFails([]);
    expect(line).toBe(`Error: config ${reg.host}/evil/img@${img.configDigest} is not valid JSON\n`);
  });
});
