import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OverlaySnapshotter } from './overlay-snapshotter.js';

let root: string;
let s: OverlaySnapshotter;
beforeEach(async () => {
  root = join(await mkdtemp(join(tmpdir(), 'snap-check-')), 'snapshots');
  s = await OverlaySnapshotter.open(root);
  // base (committed, id 1) ← work (active, id 2); a view (id 3) on base.
  await s.prepare('base-key', undefined);
  await s.commit('base', 'base-key');
  await s.prepare('work', 'base');
  await s.view('look', 'base');
});
afterEach(() => rm(join(root, '..'), { recursive: true, force: true }));

const metadata = async () => JSON.parse(await readFile(join(root, 'metadata.json'), 'utf8')) as { nextId: number; snapshots: Record<string, Record<string, unknown>> };

describe('OverlaySnapshotter.check (for fsck)', () => {
  it('finds nothing wrong in a healthy root, or where there is no root yet', async () => {
    expect(await OverlaySnapshotter.check(root)).toEqual([]);
    expect(await OverlaySnapshotter.check(join(root, 'nowhere'))).toEqual([]);
  });

  it('reports a deleted snapshot directory', async () => {
    await rm(join(root, '1'), { recursive: true });
    expect(await OverlaySnapshotter.check(root)).toEqual([`snapshot "base": its directory ${join(root, '1/fs')} is missing`]);
  });

  it("reports an active snapshot's missing workdir", async () => {
    await rm(join(root, '2/work'), { recursive: true });
    expect(await OverlaySnapshotter.check(root)).toEqual([`snapshot "work": its directory ${join(root, '2/work')} is missing`]);
  });

  it.each([
    ['not JSON', '{"version":1,'],
    ['null', 'null'],
    ['snapshots null', '{"version":1,"nextId":4,"snapshots":null}'],
    ['a list', '[]'],
  ])('reports a metadata.json that is %s', async (_what, text) => {
    await writeFile(join(root, 'metadata.json'), text);
    const problems = await OverlaySnapshotter.check(root);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^snapshot metadata ${join(root, 'metadata.json')} is corrupt: `));
  });

  it('reports records that do not hold together', async () => {
    const m = await metadata();
    m.snapshots.work!.parent = 'gone';
    m.snapshots.look!.parent = 'work';
    m.snapshots.odd = { id: 'x', kind: 'active' };
    m.snapshots.twin = { ...m.snapshots.base, id: 1 };
    m.snapshots.strange = { id: 3, kind: 'sleeping' };
    await writeFile(join(root, 'metadata.json'), JSON.stringify(m));
    const at = (k: string) => `snapshot "${k}" (${join(root, 'metadata.json')})`;
    expect((await OverlaySnapshotter.check(root)).sort()).toEqual([
      `${at('look')}: parent "work" is not committed (it is active)`,
      `${at('odd')}: invalid id "x"`,
      `${at('strange')}: id 3 is also the id of snapshot "look"`,
      `${at('strange')}: invalid kind "sleeping"`,
      `${at('twin')}: id 1 is also the id of snapshot "base"`,
      `${at('work')}: parent "gone" does not exist`,
    ].sort());
  });
});
