import type { Digest, HistoryEntry } from '@tsbuild/oci';
import type { Image, Layer } from '@tsbuild/store';
import { FlatTree, type FlatNode } from './flat-tree.js';
import { openLayerTar, scanLayerTar, type FileMeta, type LayerEntry } from './layer-entries.js';
import { pathFilter } from './path-filter.js';

export type ChangeKind = 'A' | 'C' | 'D';

/** One path a layer added (A), changed (C: the path existed below) or deleted (D). */
export interface Change extends FileMeta {
  kind: ChangeKind;
}

export interface LayerChanges {
  index: number;
  digest: Digest;
  diffID: Digest;
  /** The layer blob's size as stored or sent (usually compressed). */
  size: number;
  /** The history entry that made the layer, when the config has one. */
  createdBy?: string;
  /** Bytes of regular files this layer writes. */
  contentSize: number;
  counts: Record<ChangeKind, number>;
  /** Sorted by path; only the paths the filters let through. */
  changes: Change[];
}

/** A file version that a later layer hides: its bytes stay in the image but cannot be seen. */
export interface WastedFile {
  path: string;
  /** Layer holding the hidden version. */
  layer: number;
  /** Layer that overwrote or deleted it. */
  hiddenBy: number;
  size: number;
  reason: 'overwritten' | 'deleted';
}

/** Content (by sha256) present in more than one layer. */
export interface DuplicateContent {
  sha256: Digest;
  size: number;
  occurrences: { layer: number; path: string }[];
  /** size × (number of layers holding it - 1). */
  wastedBytes: number;
}

export interface WasteReport {
  /** Bytes of every regular file in every layer. */
  totalBytes: number;
  /** Bytes of file versions a later layer replaced. */
  overwrittenBytes: number;
  /** Bytes of files a later layer deleted (whiteouts, opaque directories, a directory replaced by a file). */
  deletedBytes: number;
  /** overwrittenBytes + deletedBytes: what the gate `maxWasted` compares. */
  wastedBytes: number;
  /** Bytes stored again in another layer with the same content (may overlap with overwrittenBytes). */
  duplicateBytes: number;
  /**
   * dive's efficiency score: the sum over paths of the smallest size seen at that path divided
   * by the sum of every size seen at it across layers (a deletion counts as size 0), i.e.
   * 1 - wasted/total in dive's terms; 1 for an image without file bytes.
   */
  efficiency: number;
  /** Largest first. */
  files: WastedFile[];
  /** Largest waste first. */
  duplicates: DuplicateContent[];
}

export interface ImageDiffReport {
  layers: LayerChanges[];
  waste: WasteReport;
  /** Paths visible in the flattened image. */
  entries: number;
}

export interface DiffOptions {
  /** Only report this layer's changes (0-based); the waste report still covers every layer. */
  layer?: number;
  /** Globs (picomatch, matched against paths without a leading slash); a match on a directory includes what is below it. */
  paths?: string[];
  /** Layers scanned at once (decompression runs on the libuv pool). Default 4. */
  concurrency?: number;
  onProgress?: (e: { layer: number; layers: number; phase: 'scanned' }) => void;
}

/** Reads each layer's tar once, at most `concurrency` at a time, keeping only per-entry metadata. */
export async function scanLayers(layers: Layer[], concurrency = 4, onScanned?: (i: number) => void, hashes = true): Promise<LayerEntry[][]> {
  const out: LayerEntry[][] = new Array<LayerEntry[]>(layers.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < layers.length; i = next++) {
      const l = layers[i]!;
      out[i] = await scanLayerTar(await openLayerTar(l), `layer ${i} (${l.digest})`, { hashes });
      onScanned?.(i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, layers.length)) }, worker));
  return out;
}

/** The history entries that made layers (those not marked empty_layer), in layer order. */
export function layerHistory(history: HistoryEntry[] | undefined, layers: number): (HistoryEntry | undefined)[] {
  const made = (history ?? []).filter((h) => h.empty_layer !== true);
  return Array.from({ length: layers }, (_, i) => (made.length === layers ? made[i] : undefined));
}

/** What applying one layer did to the tree below it. */
interface Applied {
  changes: Change[];
  hidden: WastedFile[];
}

/**
 * Applies one layer's entries to `tree` with overlayfs/image-spec semantics: whiteouts and
 * opaque markers remove paths of the layers below first, then the layer's own entries land.
 * A path the layer writes that existed below (even if this layer's whiteout removed it first)
 * is C; a path removed and not written again is D; anything else is A.
 */
export function applyLayer(tree: FlatTree, entries: LayerEntry[], index: number): Applied {
  const removed = new Map<string, FlatNode>();
  const keep = (p: string, n: FlatNode): void => void removed.set(p, n);
  for (const e of entries) {
    if (e.kind === 'whiteout') tree.removeSubtree(e.path, keep);
    else if (e.kind === 'opaque') tree.removeChildren(e.path, keep);
  }
  const changes: Change[] = [];
  const hidden: WastedFile[] = [];
  const hide = (n: FlatNode, reason: WastedFile['reason'], path: string): void => {
    if (n.meta.type === 'file' && n.layer !== index) hidden.push({ path, layer: n.layer, hiddenBy: index, size: n.meta.size, reason });
  };
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    const m = e.meta;
    const lower = tree.get(m.path);
    const before = lower ?? removed.get(m.path);
    if (lower !== undefined && lower.meta.type === 'dir' && m.type !== 'dir') tree.removeChildren(m.path, keep);
    if (before !== undefined) {
      removed.delete(m.path);
      if (before.layer !== index) hide(before, 'overwritten', m.path);
    }
    // A path written twice in one layer: the later entry wins and the first is not a change of its own.
    const dup = before?.layer === index;
    tree.set(m.path, { meta: m, layer: index });
    if (!dup) changes.push({ kind: before !== undefined ? 'C' : 'A', ...m });
    else {
      const at = changes.findIndex((c) => c.path === m.path);
      if (at >= 0) changes[at] = { kind: changes[at]!.kind, ...m };
    }
  }
  for (const [p, n] of removed) {
    if (n.layer === index) continue;
    changes.push({ kind: 'D', ...n.meta, path: p });
    hide(n, 'deleted', p);
  }
  changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { changes, hidden };
}

/**
 * Per-layer changes of an image and dive's wasted-space report, from one streaming pass over
 * every layer: memory grows with the number of entries, never with file sizes.
 */
export async function diffImage(image: Image, opts: DiffOptions = {}): Promise<ImageDiffReport> {
  const [layers, config] = await Promise.all([image.layers(), image.config()]);
  const history = layerHistory(config.history, layers.length);
  const scanned = await scanLayers(layers, opts.concurrency, (i) => opts.onProgress?.({ layer: i, layers: layers.length, phase: 'scanned' }));
  const filter = pathFilter(opts.paths);

  const tree = new FlatTree();
  const reports: LayerChanges[] = [];
  const wasted: WastedFile[] = [];
  // dive: per path, the sum of the sizes seen in every layer and the smallest of them.
  const perPath = new Map<string, { cumulative: number; min: number }>();
  const seen = (path: string, size: number): void => {
    const s = perPath.get(path);
    if (s === undefined) perPath.set(path, { cumulative: size, min: size });
    else {
      s.cumulative += size;
      if (size < s.min) s.min = size;
    }
  };
  const contents = new Map<Digest, { size: number; layers: Set<number>; occurrences: { layer: number; path: string }[] }>();
  let totalBytes = 0;

  for (const [i, entries] of scanned.entries()) {
    const { changes, hidden } = applyLayer(tree, entries, i);
    wasted.push(...hidden);
    let contentSize = 0;
    for (const e of entries) {
      if (e.kind !== 'file' || e.meta.type === 'dir') continue;
      seen(e.meta.path, e.meta.size);
      if (e.meta.type !== 'file') continue;
      contentSize += e.meta.size;
      if (e.meta.size > 0 && e.meta.sha256 !== undefined) {
        let c = contents.get(e.meta.sha256);
        if (c === undefined) contents.set(e.meta.sha256, (c = { size: e.meta.size, layers: new Set(), occurrences: [] }));
        c.layers.add(i);
        c.occurrences.push({ layer: i, path: e.meta.path });
      }
    }
    for (const c of changes) if (c.kind === 'D' && c.type !== 'dir') seen(c.path, 0);
    totalBytes += contentSize;
    const counts = { A: 0, C: 0, D: 0 };
    for (const c of changes) counts[c.kind]++;
    const l = layers[i]!;
    const report: LayerChanges = {
      index: i,
      digest: l.digest,
      diffID: l.diffID,
      size: l.size,
      contentSize,
      counts,
      changes: opts.layer !== undefined && opts.layer !== i ? [] : changes.filter((c) => filter(c.path)),
    };
    const createdBy = history[i]?.created_by;
    if (createdBy !== undefined) report.createdBy = createdBy;
    reports.push(report);
  }

  let minSum = 0;
  let cumSum = 0;
  for (const s of perPath.values()) {
    minSum += s.min;
    cumSum += s.cumulative;
  }
  const duplicates: DuplicateContent[] = [];
  for (const [sha256, c] of contents) {
    if (c.layers.size < 2) continue;
    duplicates.push({ sha256, size: c.size, occurrences: c.occurrences, wastedBytes: c.size * (c.layers.size - 1) });
  }
  duplicates.sort((a, b) => b.wastedBytes - a.wastedBytes || (a.sha256 < b.sha256 ? -1 : 1));
  wasted.sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : a.path > b.path ? 1 : a.layer - b.layer));
  const overwrittenBytes = sum(wasted.filter((w) => w.reason === 'overwritten').map((w) => w.size));
  const deletedBytes = sum(wasted.filter((w) => w.reason === 'deleted').map((w) => w.size));
  const layerSelected = opts.layer;
  return {
    layers: layerSelected !== undefined ? reports.filter((r) => r.index === layerSelected) : reports,
    entries: tree.size,
    waste: {
      totalBytes,
      overwrittenBytes,
      deletedBytes,
      wastedBytes: overwrittenBytes + deletedBytes,
      duplicateBytes: sum(duplicates.map((d) => d.wastedBytes)),
      efficiency: cumSum === 0 ? 1 : minSum / cumSum,
      files: wasted.filter((w) => filter(w.path)),
      duplicates: opts.paths?.length ? duplicates.filter((d) => d.occurrences.some((o) => filter(o.path))) : duplicates,
    },
  };
}

/**
 * The flattened filesystem of an image: every visible path and its metadata, with the content
 * hash of regular files unless `hashes` is false (export needs only which layer shows a path).
 */
export async function flattenImage(image: Image, opts: { concurrency?: number; hashes?: boolean } = {}): Promise<FlatTree> {
  const scanned = await scanLayers(await image.layers(), opts.concurrency, undefined, opts.hashes);
  const tree = new FlatTree();
  for (const [i, entries] of scanned.entries()) applyLayer(tree, entries, i);
  return tree;
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
