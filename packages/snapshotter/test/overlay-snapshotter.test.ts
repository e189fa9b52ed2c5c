import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '@tsbuild/oci';
import { OverlaySnapshotter } from '../src/index.js';
import { mountAll } from './helpers.js';

let tmp: string;
let undo: (() => void)[] = [];

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'tsbuild-snap-'));
  undo = [];
});
afterEach(async () => {
  for (const u of undo.reverse()) u();
  await rm(tmp, { recursive: true, force: true });
});

async function mountAt(s: OverlaySnapshotter, key: string, name: string): Promise<string> {
  const target = join(tmp, name);
  await mkdir(target, { recursive: true });
  undo.push(mountAll(await s.mounts(key), target));
  return target;
}

describe('OverlaySnapshotter', () => {
  it('chains prepare/commit and a mounted overlay shows every lower layer', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    const m0 = await s.prepare('k0');
    expect(m0).toEqual([{ type: 'bind', source: await s.fsDir('k0'), options: ['rbind', 'rw'] }]);
    await writeFile(join(await s.fsDir('k0'), 'base.txt'), 'base');
    await s.commit('l0', 'k0', { labels: { a: 'b' } });
    expect(await s.exists('k0')).toBe(false);
    expect(await s.stat('l0')).toMatchObject({ kind: 'committed', name: 'l0', labels: { a: 'b' } });

    await s.prepare('k1', 'l0');
    await writeFile(join(await s.fsDir('k1'), 'mid.txt'), 'mid');
    await s.commit('l1', 'k1');

    const mounts = await s.prepare('k2', 'l1');
    expect(mounts).toHaveLength(1);
    expect(mounts[0]!.type).toBe('overlay');
    const lower = mounts[0]!.options.find((o) => o.startsWith('lowerdir='));
    expect(lower).toBe(`lowerdir=${await s.fsDir('l1')}:${await s.fsDir('l0')}`);
    expect(mounts[0]!.options.slice(0, 3)).toEqual(['index=off', 'metacopy=off', 'redirect_dir=off']);

    const merged = await mountAt(s, 'k2', 'merged');
    expect((await readdir(merged)).sort()).toEqual(['base.txt', 'mid.txt']);
    await writeFile(join(merged, 'top.txt'), 'top');
    expect(await readFile(join(await s.fsDir('k2'), 'top.txt'), 'utf8')).toBe('top');
    expect(await readdir(await s.fsDir('l1'))).toEqual(['mid.txt']);

    expect((await s.stat('k2')).parent).toBe('l1');
    const seen: string[] = [];
    await s.walk((i) => void seen.push(`${i.name}:${i.kind}:${i.parent ?? ''}`));
    expect(seen).toEqual(['k2:active:l1', 'l0:committed:', 'l1:committed:l0']);
  });

  it('views: one layer is a read-only bind, several an overlay without upperdir', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await s.prepare('k0');
    await writeFile(join(await s.fsDir('k0'), 'a'), 'a');
    await s.commit('l0', 'k0');
    await s.prepare('k1', 'l0');
    await writeFile(join(await s.fsDir('k1'), 'b'), 'b');
    await s.commit('l1', 'k1');

    expect(await s.view('v0', 'l0')).toEqual([{ type: 'bind', source: await s.fsDir('l0'), options: ['rbind', 'ro'] }]);
    const v1 = await s.view('v1', 'l1');
    expect(v1[0]!.options).toEqual(['index=off', 'metacopy=off', 'redirect_dir=off', `lowerdir=${await s.fsDir('l1')}:${await s.fsDir('l0')}`]);
    const m = await mountAt(s, 'v1', 'view');
    expect((await readdir(m)).sort()).toEqual(['a', 'b']);
    await expect(writeFile(join(m, 'c'), 'c')).rejects.toMatchObject({ code: 'EROFS' });
    const m0 = await mountAt(s, 'v0', 'view0');
    await expect(writeFile(join(m0, 'c'), 'c')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(s.commit('x', 'v1')).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('refuses duplicate keys, missing or uncommitted parents, committing onto an existing name', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await s.prepare('k');
    await expect(s.prepare('k')).rejects.toBeInstanceOf(AlreadyExistsError);
    await expect(s.prepare('k2', 'nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(s.prepare('k2', 'k')).rejects.toThrow(/not committed/);
    await expect(s.prepare('k2', 'k')).rejects.toBeInstanceOf(FailedPreconditionError);
    await s.commit('n', 'k');
    await s.prepare('k3');
    await expect(s.commit('n', 'k3')).rejects.toBeInstanceOf(AlreadyExistsError);
    expect((await s.stat('k3')).kind).toBe('active');
    await expect(s.stat('missing')).rejects.toBeInstanceOf(NotFoundError);
    await expect(s.mounts('n')).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('remove refuses a parent, naming its children, and deletes the data of a leaf', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await s.prepare('k');
    await s.commit('base', 'k');
    await s.prepare('child', 'base');
    await expect(s.remove('base')).rejects.toThrow(/"base".*parent of "child"/);
    await expect(s.remove('base')).rejects.toBeInstanceOf(FailedPreconditionError);
    const dir = await s.fsDir('child');
    await s.remove('child');
    expect(existsSync(dir)).toBe(false);
    await s.remove('base');
    expect(await s.exists('base')).toBe(false);
    await expect(s.remove('base')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('metadata survives reopening; cleanup removes data no record names', async () => {
    const root = join(tmp, 'snapshots');
    const s = await OverlaySnapshotter.open(root);
    await s.prepare('k', undefined, { labels: { x: 'y' } });
    await writeFile(join(await s.fsDir('k'), 'f'), 'data');
    await s.commit('n', 'k');
    await s.prepare('k2', 'n');
    await mkdir(join(root, '999', 'fs'), { recursive: true }); // a prepare that crashed
    await mkdir(join(root, '7.removing'));

    const again = await OverlaySnapshotter.open(root);
    expect(await again.stat('n')).toMatchObject({ kind: 'committed', labels: { x: 'y' } });
    expect(await again.stat('k2')).toMatchObject({ kind: 'active', parent: 'n' });
    expect(await readFile(join(await again.fsDir('n'), 'f'), 'utf8')).toBe('data');
    await again.cleanup();
    expect((await readdir(root)).sort()).toEqual(['1', '2', 'lock', 'metadata.json']);
  });

  it('usage counts the snapshot own blocks and inodes, hardlinks once', async () => {
    const s = await OverlaySnapshotter.open(join(tmp, 'snapshots'));
    await s.prepare('k');
    const fs = await s.fsDir('k');
    await writeFile(join(fs, 'big'), Buffer.alloc(64 * 1024, 1));
    await link(join(fs, 'big'), join(fs, 'big2'));
    await symlink('big', join(fs, 'sym'));
    const u = await s.usage('k');
    expect(u.inodes).toBe(3); // root dir, big (twice linked), sym
    expect(u.size).toBeGreaterThanOrEqual(64 * 1024);
  });

  it('two processes preparing and committing on one root keep metadata consistent', async () => {
    execFileSync('npx', ['tsc', '-b', 'packages/snapshotter'], { cwd: join(import.meta.dirname, '../../..') });
    const root = join(tmp, 'snapshots');
    const s = await OverlaySnapshotter.open(root);
    await s.prepare('k');
    await s.commit('base', 'k');
    const dist = join(import.meta.dirname, '../dist/index.js');
    const script = `
      const { OverlaySnapshotter } = await import(${JSON.stringify(dist)});
      const s = await OverlaySnapshotter.open(process.argv[1]);
      const who = process.argv[2];
      for (let i = 0; i < 25; i++) {
        await s.prepare(who + '-k' + i, 'base');
        await s.commit(who + '-n' + i, who + '-k' + i);
      }`;
    const run = (who: string) =>
      new Promise<void>((resolve, reject) => {
        const p = spawn(process.execPath, ['--input-type=module', '-e', script, root, who], { stdio: ['ignore', 'inherit', 'inherit'] });
        p.on('error', reject);
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${who} exited ${code}`))));
      });
    await Promise.all([run('a'), run('b'), run('c')]);
    const names: string[] = [];
    const ids = new Set<string>();
    await s.walk(async (i) => {
      names.push(i.name);
      ids.add(await s.fsDir(i.name));
      expect(i.kind).toBe('committed');
    });
    expect(names).toHaveLength(76);
    expect(ids.size).toBe(76);
    for (const w of ['a', 'b', 'c']) for (let i = 0; i < 25; i++) expect(names).toContain(`${w}-n${i}`);
    for (const d of ids) expect(existsSync(d)).toBe(true);
  });
});

