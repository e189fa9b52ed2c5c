import type { ImageConfig } from '@tsbuild/oci';
import type { Image } from '@tsbuild/store';
import type { FlatTree } from './flat-tree.js';
import { flattenImage } from './layer-diff.js';
import type { FileMeta } from './layer-entries.js';
import { pathFilter } from './path-filter.js';

/** A path that differs between two flattened images: A only in the second, D only in the first, C in both but different. */
export interface FileDifference {
  kind: 'A' | 'C' | 'D';
  path: string;
  before?: FileMeta;
  after?: FileMeta;
  /** For C: which properties differ. */
  fields?: ('type' | 'content' | 'mode' | 'uid' | 'gid' | 'linkname')[];
}

/** A config field (dotted path, e.g. `config.Env` or `config.Labels.version`) whose value differs. */
export interface ConfigDifference {
  field: string;
  before?: unknown;
  after?: unknown;
}

export interface ImageComparison {
  files: FileDifference[];
  config: ConfigDifference[];
}

/**
 * The difference between two images' flattened filesystems (by type, content hash, mode, owner
 * and link target; a directory's content is its listing, compared path by path) and between
 * their configs, field by field.
 */
export async function compareImages(a: Image, b: Image, opts: { paths?: string[] } = {}): Promise<ImageComparison> {
  const [ta, tb, ca, cb] = await Promise.all([flattenImage(a), flattenImage(b), a.config(), b.config()]);
  return { files: compareTrees(ta, tb, opts.paths), config: compareConfigs(ca, cb) };
}

export function compareTrees(a: FlatTree, b: FlatTree, globs?: string[]): FileDifference[] {
  const filter = pathFilter(globs);
  const out: FileDifference[] = [];
  for (const [path, na] of a.entries()) {
    if (!filter(path)) continue;
    const nb = b.get(path);
    if (nb === undefined) {
      out.push({ kind: 'D', path, before: na.meta });
      continue;
    }
    const fields = differingFields(na.meta, nb.meta);
    if (fields.length > 0) out.push({ kind: 'C', path, before: na.meta, after: nb.meta, fields });
  }
  for (const [path, nb] of b.entries()) if (filter(path) && a.get(path) === undefined) out.push({ kind: 'A', path, after: nb.meta });
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

function differingFields(x: FileMeta, y: FileMeta): NonNullable<FileDifference['fields']> {
  const f: NonNullable<FileDifference['fields']> = [];
  if (x.type !== y.type) f.push('type');
  if (x.type === 'file' && y.type === 'file' && x.sha256 !== y.sha256) f.push('content');
  if (x.mode !== y.mode) f.push('mode');
  if (x.uid !== y.uid) f.push('uid');
  if (x.gid !== y.gid) f.push('gid');
  if ((x.linkname ?? '') !== (y.linkname ?? '')) f.push('linkname');
  return f;
}

/** Objects are compared key by key (recursively); arrays and scalars as whole values. */
export function compareConfigs(a: ImageConfig, b: ImageConfig): ConfigDifference[] {
  const out: ConfigDifference[] = [];
  const walk = (x: unknown, y: unknown, field: string): void => {
    if (isObject(x) && isObject(y)) {
      for (const k of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) walk(x[k], y[k], field === '' ? k : `${field}.${k}`);
      return;
    }
    if (JSON.stringify(x) === JSON.stringify(y)) return;
    const d: ConfigDifference = { field };
    if (x !== undefined) d.before = x;
    if (y !== undefined) d.after = y;
    out.push(d);
  };
  walk(a, b, '');
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
