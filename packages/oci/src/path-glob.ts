import { pathParts } from './in-root-path.js';

/**
 * What a glob needs of a tree: whether a path exists and the names in a directory, both answered
 * with the path resolved inside the tree's own root (a build context, a merged view), so that a
 * pattern never walks through a symlink out to the host.
 */
export interface GlobTree {
  /** The entry at `p`, a final symlink not followed (undefined when missing). */
  lstat(p: string): Promise<{ isDirectory(): boolean } | undefined>;
  /** Sorted names in a directory, or undefined when `dir` is no directory. */
  list(dir: string): Promise<string[] | undefined>;
}

/**
 * Paths (`/a/b`) in `tree` matching `pattern`, with Go filepath.Match wildcards per segment (as
 * docker's COPY): segments without wildcards are looked up, the others matched against the
 * directory's names. A `**` segment matches any number of directories, none included (as
 * BuildKit's file patterns do). Dot files match too. A `\` makes the next character literal, as
 * in Go's filepath.Match.
 */
export async function globPaths(pattern: string, tree: GlobTree): Promise<string[]> {
  let matches = [''];
  for (const seg of pathParts(pattern)) {
    const next: string[] = [];
    for (const m of matches) {
      if (seg === '**') {
        for (const d of await descendants(tree, m)) if (!next.includes(d)) next.push(d);
        continue;
      }
      if (!hasWildcard(seg)) {
        const name = unescapeGlob(seg);
        if ((await tree.lstat(`${m}/${name}`)) !== undefined) next.push(`${m}/${name}`);
        continue;
      }
      const re = segmentRegExp(seg);
      for (const n of (await tree.list(m || '/')) ?? []) if (re.test(n)) next.push(`${m}/${n}`);
    }
    matches = next;
  }
  return matches;
}

/** `dir` and every path below it; a symlink is matched but not descended into (no loops). */
async function descendants(tree: GlobTree, dir: string): Promise<string[]> {
  const out = [dir];
  for (let i = 0; i < out.length; i++) {
    const d = out[i]!;
    if (d !== dir && !(await tree.lstat(d))?.isDirectory()) continue;
    for (const n of (await tree.list(d || '/')) ?? []) out.push(`${d}/${n}`);
  }
  return out;
}

/** Go's filepath.Match for one path segment: `*`, `?`, `[...]` (with `^`/`!` negation). */
export function segmentRegExp(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = seg.indexOf(']', i + 1);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let cls = seg.slice(i + 1, end);
      if (cls.startsWith('!') || cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < seg.length) re += `\\${seg[++i]}`;
    else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Whether `pattern` has a wildcard (`*`, `?`, `[`) not escaped by a `\`: otherwise it names one path. */
export function hasWildcard(pattern: string): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

/**
 * The path a pattern without wildcards names: an escaped wildcard (`\*`, `\?`, `\[`, `\]`) or
 * backslash is that character; any other backslash stays part of the name.
 */
export function unescapeGlob(pattern: string): string {
  return pattern.replace(/\\([*?[\]\\])/g, '$1');
}
