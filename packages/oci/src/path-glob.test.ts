import { describe, expect, it } from 'vitest';
import { globPaths, hasWildcard, unescapeGlob } from './path-glob.js';

/** A tree of names (directories end with /) for globPaths, without a filesystem. */
function tree(paths: string[]) {
  const has = (p: string) => p === '' || paths.some((x) => x === p || x === `${p}/` || x.startsWith(`${p}/`));
  return {
    lstat: async (p: string) => (has(p.replace(/^\//, '')) ? { isDirectory: () => paths.some((x) => x.startsWith(`${p.replace(/^\//, '')}/`)) } : undefined),
    list: async (dir: string) => {
      const d = dir.replace(/^\//, '');
      const names = new Set<string>();
      for (const x of paths) if (d === '' || x.startsWith(`${d}/`)) names.add(x.slice(d === '' ? 0 : d.length + 1).split('/')[0]!);
      names.delete('');
      return [...names].sort();
    },
  };
}

describe('escaped wildcards (Go filepath.Match)', () => {
  it('a pattern whose only wildcards are escaped is no wildcard, and names the literal path', () => {
    expect(hasWildcard('n\\?pe')).toBe(false);
    expect(hasWildcard('\\[x\\]')).toBe(false);
    expect(hasWildcard('a\\*b*')).toBe(true);
    expect(unescapeGlob('n\\?pe')).toBe('n?pe');
    expect(unescapeGlob('\\[x\\]/a\\b')).toBe('[x]/a\\b');
  });

  it('matches escaped characters literally inside a pattern', async () => {
    const t = tree(['n?pe', 'nope', 's*r1', 'sir', 'd?/x', 'do/x']);
    expect(await globPaths('n\\?pe', t)).toEqual(['/n?pe']);
    expect(await globPaths('s\\*r*', t)).toEqual(['/s*r1']);
    expect(await globPaths('d\\?/*', t)).toEqual(['/d?/x']);
    expect(await globPaths('n?pe', t)).toEqual(['/n?pe', '/nope']);
  });
});
