import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Store } from '../src/index.js';
import { buildDist, helper } from './build-dist.js';

let dir: string;
beforeAll(async () => {
  await buildDist();
  dir = await mkdtemp(join(tmpdir(), 'store-conc-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runChild(root: string, prefix: string, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [helper('name-writer.mjs'), root, prefix, String(count)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${prefix} writer exited ${code}: ${err}`))));
  });
}

it('two processes writing blobs and names at once on one store lose nothing', async () => {
  const root = join(dir, 'root');
  await Promise.all([runChild(root, 'one', 30), runChild(root, 'two', 30)]);
  const store = await Store.open(root);
  const names = (await store.listImages()).map((r) => r.name);
  expect(names).toHaveLength(60);
  for (const p of ['one', 'two']) for (let i = 0; i < 30; i++) expect(names).toContain(`docker.io/${p}/img:${i}`);
  const report = await store.fsck();
  expect(report.problems).toEqual([]);
  expect(report.blobsChecked).toBe(180);
  expect(await readdir(join(root, 'ingest'))).toEqual([]);
  // Every name is reachable: gc under the exclusive lock removes nothing.
  expect((await store.withLock('exclusive', () => store.gc())).removed).toEqual([]);
});
