import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256Of } from '@tsbuild/oci';
import { Store } from '../src/index.js';
import { buildDist, helper } from './build-dist.js';

let dir: string;
beforeAll(async () => {
  await buildDist();
  dir = await mkdtemp(join(tmpdir(), 'store-crash-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('kill -9 in the middle of writing a blob leaves a store that fsck passes and gc cleans', async () => {
  const root = join(dir, 'root');
  const store = await Store.open(root);
  const named = await store.putJSON({ schemaVersion: 2, manifests: [] }, 'application/vnd.oci.image.index.v1+json');
  await store.setName('survivor', named);
  const expected = sha256Of(Buffer.alloc(256 << 20, 0x61));

  const child = spawn(process.execPath, [helper('slow-writer.mjs'), root, expected], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`writer exited early (${code})`)));
    child.stdout.on('data', (d: Buffer) => d.toString().includes('writing') && resolve());
  });
  child.removeAllListeners('exit');
  const exited = new Promise((r) => child.on('exit', (_code, signal) => r(signal)));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');

  expect(await readdir(join(root, 'ingest'))).toHaveLength(1); // the half-written temp file
  expect(await store.content.info(expected)).toBeUndefined();
  const report = await store.fsck();
  expect(report.problems).toEqual([]);
  expect(report.blobsChecked).toBe(1);
  expect(await store.listImages()).toEqual([{ name: 'docker.io/library/survivor:latest', descriptor: named }]);

  // The kernel dropped the dead writer's shared lock: the exclusive lock is granted at once.
  const res = await store.withLock('exclusive', () => store.gc());
  expect(res.removed).toEqual([]);
  expect(await readdir(join(root, 'ingest'))).toEqual([]);
  expect((await store.fsck()).problems).toEqual([]);
});
