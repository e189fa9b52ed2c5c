import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layout rule of ARCHITECTURE.md, checked over the sources: imports point down only
 * (cli → {builder, image} → container → {runtime, snapshotter, registry-client, store} →
 * {linux, oci}), no import cycle anywhere (also inside a package), and a package is reached only
 * through its `@tsbuild/<name>` entry point, never by a path into its src/ or dist/.
 * Pure: it reads files, needs neither root nor a build.
 */

const PACKAGES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Tiers, bottom up. A package may import a package of a lower tier; in the two lowest tiers also
 * one of its own (linux uses oci's errors, registry-client the store's Image), as long as the
 * package graph stays acyclic. From container up, packages of one tier stay apart: builder and
 * image are both clients of container, neither of the other.
 */
const TIERS: Record<string, number> = {
  oci: 0,
  linux: 0,
  store: 1,
  snapshotter: 1,
  runtime: 1,
  'registry-client': 1,
  container: 2,
  builder: 3,
  image: 3,
  cli: 4,
};
const SIDEWAYS_TIERS = new Set([0, 1]);

interface Edge {
  from: string; // file, relative to packages/
  to: string; // file relative to packages/, or `@tsbuild/<name>`
  specifier: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier of `import … from`, `export … from`, `import '…'` and `import('…')`. */
export function specifiers(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const re of [
    /^\s*(?:import|export)\b[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ]) {
    for (const m of code.matchAll(re)) out.push(m[1] as string);
  }
  return out;
}

function resolveRelative(fromFile: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(fromFile), spec);
  for (const c of [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (existsSync(c) && c.endsWith('.ts')) return c;
  }
  return undefined;
}

function packageOf(file: string): string {
  return path.relative(PACKAGES, file).split(path.sep)[0] as string;
}

function collect(): { files: string[]; edges: Edge[]; problems: string[] } {
  const files: string[] = [];
  const edges: Edge[] = [];
  const problems: string[] = [];
  for (const pkg of readdirSync(PACKAGES)) {
    const src = path.join(PACKAGES, pkg, 'src');
    if (!existsSync(src)) continue;
    for (const file of sourceFiles(src)) {
      files.push(file);
      const rel = path.relative(PACKAGES, file);
      for (const spec of specifiers(readFileSync(file, 'utf8'))) {
        if (spec.startsWith('.')) {
          const target = resolveRelative(file, spec);
          if (target === undefined) {
            // A non-TS file (JSON, a bundled helper): not a module of the graph, but it must stay inside the package.
            const p = path.resolve(path.dirname(file), spec);
            if (!p.startsWith(path.join(PACKAGES, pkg) + path.sep)) problems.push(`${rel}: '${spec}' reaches into another package`);
            continue;
          }
          if (packageOf(target) !== pkg) problems.push(`${rel}: '${spec}' reaches into package ${packageOf(target)} by path`);
          else edges.push({ from: rel, to: path.relative(PACKAGES, target), specifier: spec });
        } else if (spec.startsWith('@tsbuild/')) {
          const [, name, ...rest] = spec.split('/');
          const sub = rest.join('/');
          if (sub !== '' && sub !== 'package.json') problems.push(`${rel}: '${spec}' imports internals of @tsbuild/${name}`);
          edges.push({ from: rel, to: `@tsbuild/${name}`, specifier: spec });
        }
      }
    }
  }
  return { files: files.map((f) => path.relative(PACKAGES, f)), edges, problems };
}

/** One cycle of the graph (as a path that starts and ends at the same node), or undefined. */
export function findCycle(nodes: string[], next: (n: string) => string[]): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of next(n)) {
      if (state.get(m) === 'open') return [...stack.slice(stack.indexOf(m)), m];
      if (state.get(m) === undefined) {
        const c = visit(m);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of [...nodes].sort()) {
    if (state.get(n) === undefined) {
      const c = visit(n);
      if (c) return c;
    }
  }
  return undefined;
}

const { files, edges, problems } = collect();

describe('source layout', () => {
  it('finds the sources and their imports', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(edges.some((e) => e.to === '@tsbuild/oci')).toBe(true);
    expect(edges.some((e) => !e.to.startsWith('@tsbuild/'))).toBe(true);
  });

  it('has no import cycle between modules, also inside a package', () => {
    const out = new Map<string, string[]>();
    for (const e of edges) if (!e.to.startsWith('@tsbuild/')) out.set(e.from, [...(out.get(e.from) ?? []), e.to]);
    const cycle = findCycle(files, (n) => [...new Set(out.get(n) ?? [])].sort());
    expect(cycle === undefined ? 'no cycle' : `cycle: ${cycle.join(' → ')}`).toBe('no cycle');
  });

  it('has no cycle between packages', () => {
    const out = new Map<string, Set<string>>();
    for (const e of edges) {
      if (!e.to.startsWith('@tsbuild/')) continue;
      const from = packageOf(path.join(PACKAGES, e.from));
      const to = e.to.slice('@tsbuild/'.length);
      if (from !== to) out.set(from, (out.get(from) ?? new Set()).add(to));
    }
    const cycle = findCycle(Object.keys(TIERS), (n) => [...(out.get(n) ?? [])].sort());
    expect(cycle === undefined ? 'no cycle' : `cycle: ${cycle.join(' → ')}`).toBe('no cycle');
  });

  it('imports between packages point down only', () => {
    const wrong: string[] = [];
    for (const pkg of new Set(files.map((f) => packageOf(path.join(PACKAGES, f))))) {
      if (TIERS[pkg] === undefined) wrong.push(`package ${pkg} has no tier in layout.test.ts`);
    }
    for (const e of edges) {
      if (!e.to.startsWith('@tsbuild/')) continue;
      const from = packageOf(path.join(PACKAGES, e.from));
      const to = e.to.slice('@tsbuild/'.length);
      const tf = TIERS[from];
      const tt = TIERS[to];
      if (tf === undefined || tt === undefined) {
        if (tt === undefined) wrong.push(`${e.from}: '${e.specifier}' is no package of this repository`);
        continue;
      }
      if (from === to) wrong.push(`${e.from}: imports its own package through '${e.specifier}'`);
      else if (tt > tf || (tt === tf && !SIDEWAYS_TIERS.has(tf))) wrong.push(`${e.from}: ${from} must not import ${to}`);
    }
    expect(wrong).toEqual([]);
  });

  it("reaches other packages only through their entry point, never into src/ or dist/", () => {
    expect(problems).toEqual([]);
  });

  it('declares what it imports: package.json dependencies, tsconfig references, and the root solution', () => {
    const missing: string[] = [];
    const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8').replace(/^\s*\/\/.*$/gm, '')) as Record<string, unknown>;
    const rootRefs = ((readJson(path.join(PACKAGES, '../tsconfig.json')).references ?? []) as { path: string }[]).map((r) => path.basename(r.path));
    for (const pkg of Object.keys(TIERS)) {
      if (!rootRefs.includes(pkg)) missing.push(`tsconfig.json: no reference to packages/${pkg}`);
      const deps = Object.keys((readJson(path.join(PACKAGES, pkg, 'package.json')).dependencies ?? {}) as Record<string, string>);
      const refs = ((readJson(path.join(PACKAGES, pkg, 'tsconfig.json')).references ?? []) as { path: string }[]).map((r) => path.basename(r.path));
      const used = new Set(edges.filter((e) => e.to.startsWith('@tsbuild/') && packageOf(path.join(PACKAGES, e.from)) === pkg).map((e) => e.to.slice('@tsbuild/'.length)));
      for (const u of [...used].sort()) {
        if (u === pkg) continue;
        if (!deps.includes(`@tsbuild/${u}`)) missing.push(`packages/${pkg}/package.json: no dependency on @tsbuild/${u}`);
        if (!refs.includes(u)) missing.push(`packages/${pkg}/tsconfig.json: no reference to ../${u}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('the layout checks themselves', () => {
  it('read import and export specifiers, multi-line, dynamic and side-effect ones, not comments', () => {
    const text = [
      "import { a,\n  b } from './a.js';",
      "export * from './b.js';",
      "export { c } from '@tsbuild/oci';",
      "import type { D } from './d.js';",
      "import './side.js';",
      "const e = await import('./e.js');",
      "// import { x } from './commented.js';",
      "/* export * from './blocked.js'; */",
      "export const f = 'from';",
    ].join('\n');
    expect(specifiers(text)).toEqual(['./a.js', './b.js', '@tsbuild/oci', './d.js', './side.js', './e.js']);
  });

  it('find a cycle and only a cycle', () => {
    const g: Record<string, string[]> = { a: ['b'], b: ['c'], c: ['a'], d: ['a'] };
    expect(findCycle(Object.keys(g), (n) => g[n] ?? [])).toEqual(['a', 'b', 'c', 'a']);
    const dag: Record<string, string[]> = { a: ['b', 'c'], b: ['c'], c: [] };
    expect(findCycle(Object.keys(dag), (n) => dag[n] ?? [])).toBeUndefined();
  });
});
