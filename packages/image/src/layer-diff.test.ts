import { describe, expect, it } from 'vitest';
import { FlatTree } from './flat-tree.js';
import { applyLayer } from './layer-diff.js';
import type { FileMeta, LayerEntry } from './layer-entries.js';

const file = (path: string, size = 1, type: FileMeta['type'] = 'file'): LayerEntry => ({ kind: 'file', meta: { path, type, size: type === 'file' ? size : 0, mode: 0o644, uid: 0, gid: 0 } });
const dir = (path: string) => file(path, 0, 'dir');
const summary = (r: ReturnType<typeof applyLayer>) => r.changes.map((c) => `${c.kind} ${c.path}`);

describe('applyLayer', () => {
  it('a file replacing a directory deletes everything below it', () => {
    const t = new FlatTree();
    applyLayer(t, [dir('a'), dir('a/b'), file('a/b/c', 5), file('a/d', 7)], 0);
    const r = applyLayer(t, [file('a', 3)], 1);
    expect(summary(r)).toEqual(['C a', 'D a/b', 'D a/b/c', 'D a/d']);
    expect(r.hidden.map((h) => [h.path, h.size, h.reason])).toEqual([
      ['a/b/c', 5, 'deleted'],
      ['a/d', 7, 'deleted'],
    ]);
    expect(t.paths()).toEqual(['a']);
  });

  it('a whiteout applies to lower layers only: the same layer may write the path again (C, not D)', () => {
    const t = new FlatTree();
    applyLayer(t, [file('x', 10)], 0);
    const r = applyLayer(t, [file('x', 4), { kind: 'whiteout', path: 'x' }], 1);
    expect(summary(r)).toEqual(['C x']);
    expect(r.hidden).toEqual([{ path: 'x', layer: 0, hiddenBy: 1, size: 10, reason: 'overwritten' }]);
    expect(t.get('x')?.meta.size).toBe(4);
  });

  it('an opaque directory hides the lower children, keeps its own and the directory itself', () => {
    const t = new FlatTree();
    applyLayer(t, [dir('d'), file('d/old', 2), file('d/kept', 3)], 0);
    const r = applyLayer(t, [dir('d'), { kind: 'opaque', path: 'd' }, file('d/kept', 3), file('d/new', 1)], 1);
    expect(summary(r)).toEqual(['C d', 'C d/kept', 'A d/new', 'D d/old']);
    expect(t.paths()).toEqual(['d', 'd/kept', 'd/new']);
  });

  it('a whiteout of a path that never existed changes nothing; a path listed twice in a layer is one change', () => {
    const t = new FlatTree();
    const r = applyLayer(t, [{ kind: 'whiteout', path: 'ghost' }, file('f', 1), file('f', 9)], 0);
    expect(summary(r)).toEqual(['A f']);
    expect(r.changes[0]!.size).toBe(9);
    expect(r.hidden).toEqual([]);
  });
});
