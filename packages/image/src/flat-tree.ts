import type { FileMeta } from './layer-entries.js';

/** A path of the flattened filesystem and the layer whose entry is visible there. */
export interface FlatNode {
  meta: FileMeta;
  layer: number;
}

/**
 * The union filesystem of layers applied so far, as overlayfs presents it (a nearer layer's entry
 * wins; a non-directory hides everything a lower layer had below it). Only metadata is kept, and
 * a child index per directory so a whiteout of a directory removes its subtree without scanning
 * every path.
 */
export class FlatTree {
  private readonly nodes = new Map<string, FlatNode>();
  private readonly children = new Map<string, Set<string>>();

  get size(): number {
    return this.nodes.size;
  }

  get(path: string): FlatNode | undefined {
    return this.nodes.get(path);
  }

  set(path: string, node: FlatNode): void {
    this.nodes.set(path, node);
    const parent = parentOf(path);
    let set = this.children.get(parent);
    if (set === undefined) this.children.set(parent, (set = new Set()));
    set.add(path);
  }

  /** The paths directly below `dir` ("" is the root). */
  childrenOf(dir: string): string[] {
    return [...(this.children.get(dir) ?? [])];
  }

  /** Removes `path` and everything below it; calls `removed` for each node, deepest last. */
  removeSubtree(path: string, removed: (path: string, node: FlatNode) => void): void {
    const node = this.nodes.get(path);
    if (node !== undefined) {
      this.nodes.delete(path);
      this.children.get(parentOf(path))?.delete(path);
      removed(path, node);
    }
    this.removeChildren(path, removed);
  }

  removeChildren(dir: string, removed: (path: string, node: FlatNode) => void): void {
    const kids = this.children.get(dir);
    if (kids === undefined) return;
    this.children.delete(dir);
    for (const k of kids) this.removeSubtree(k, removed);
  }

  /** Every visible path, sorted. */
  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }

  entries(): IterableIterator<[string, FlatNode]> {
    return this.nodes.entries();
  }
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}
