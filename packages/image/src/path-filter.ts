import { createRequire } from 'node:module';
import type picomatchT from 'picomatch';
import { normalisePath } from './layer-entries.js';

/**
 * A predicate for paths (no leading slash) from globs: a path passes when a glob matches it or
 * one of its parent directories, so `--path etc` selects all of /etc. No globs: everything passes.
 */
export function pathFilter(globs: string[] | undefined): (path: string) => boolean {
  if (globs === undefined || globs.length === 0) return () => true;
  // Loaded when a filter is given: builds share this module's chunk and never need it.
  const picomatch = createRequire(import.meta.url)('picomatch') as typeof picomatchT;
  const match = picomatch(globs.map((g) => normalisePath(g)), { dot: true });
  return (path) => {
    for (let p = path; p !== ''; p = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '') if (match(p)) return true;
    return false;
  };
}
