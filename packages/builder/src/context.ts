import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { Ignore } from '@balena/dockerignore';
import { NotFoundError } from '@tsbuild/oci';
import { resolveInRoot } from './root-walk.js';

// The package is CommonJS (module.exports = factory) while its typings declare a default export.
const dockerignore = createRequire(import.meta.url)('@balena/dockerignore') as (opts?: { ignorecase?: boolean }) => Ignore;

/**
 * The build context: a directory, filtered by `.dockerignore` (or `<Dockerfile>.dockerignore`
 * beside the Dockerfile, which wins, as BuildKit does). When ignore rules exist the selected
 * files are staged into a scratch directory as hard links (copies across filesystems), so that
 * a COPY of a directory can never pick up an ignored file.
 */
export class BuildContext {
  private constructor(
    /** The directory COPY sources are resolved in (the context, or its filtered stage). */
    readonly dir: string,
  ) {}

  static async open(contextDir: string, dockerfilePath: string | undefined, scratch: string): Promise<BuildContext> {
    const st = await fsp.stat(contextDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new NotFoundError(`build context ${contextDir}: no such directory`);
    const rules = await readIgnore(contextDir, dockerfilePath);
    if (rules === undefined) return new BuildContext(contextDir);
    const ig = dockerignore({ ignorecase: false }).add(rules);
    const staged = path.join(scratch, 'context');
    await fsp.mkdir(staged, { recursive: true });
    await stage(contextDir, staged, '', (rel) => ig.ignores(rel));
    return new BuildContext(staged);
  }

  /**
   * Host paths of the sources a COPY names, relative to the context root. Wildcards follow Go's
   * filepath.Match (`*`, `?`, `[…]`) per path segment; `..` cannot leave the context. A source
   * that matches nothing is an error naming it.
   */
  async resolve(sources: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const src of sources) {
      const rel = path.posix.normalize(`/${src}`).slice(1);
      if (/[*?[]/.test(rel)) {
        // tinyglobby (with picomatch) loads for wildcard sources only.
        const { glob } = await import('tinyglobby');
        const matches = await glob(rel, { cwd: this.dir, dot: true, onlyFiles: false, followSymbolicLinks: false, expandDirectories: false });
        if (matches.length === 0) throw new NotFoundError(`COPY source ${src}: no source files were specified (nothing in the context matches)`);
        for (const m of matches.sort()) out.push(path.join(this.dir, m.replace(/\/$/, '')));
        continue;
      }
      const p = await resolveInside(this.dir, rel);
      if (p === undefined || !(await fsp.lstat(p).catch(() => undefined))) throw new NotFoundError(`COPY source ${src}: no such file or directory in the build context`);
      out.push(p);
    }
    return out;
  }
}

/**
 * The host path of `rel` inside `root`, with symlinks in its directory part resolved inside the
 * context (an absolute target starts again at the context root, `..` stops at it), so that a
 * source never reaches out of the context. The last component is not followed: a symlink is
 * copied as a symlink.
 */
export async function resolveInside(root: string, rel: string): Promise<string | undefined> {
  const parts = await resolveInRoot(rel, async (at) => {
    const abs = path.join(root, ...at);
    return (await fsp.lstat(abs).catch(() => undefined))?.isSymbolicLink() ? fsp.readlink(abs) : undefined;
  });
  return parts === undefined ? undefined : path.join(root, ...parts);
}

async function readIgnore(contextDir: string, dockerfilePath: string | undefined): Promise<string[] | undefined> {
  const candidates = [...(dockerfilePath ? [`${dockerfilePath}.dockerignore`] : []), path.join(contextDir, '.dockerignore')];
  for (const c of candidates) {
    const text = await fsp.readFile(c, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      return text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
    }
  }
  return undefined;
}

async function stage(src: string, dst: string, rel: string, ignored: (rel: string) => boolean): Promise<void> {
  for (const ent of await fsp.readdir(path.join(src, rel), { withFileTypes: true })) {
    const r = rel === '' ? ent.name : `${rel}/${ent.name}`;
    if (ignored(r)) {
      // A directory that is ignored may still hold re-included (`!`) files.
      if (ent.isDirectory()) await stage(src, dst, r, ignored);
      continue;
    }
    const from = path.join(src, r);
    const to = path.join(dst, r);
    await fsp.mkdir(path.dirname(to), { recursive: true });
    if (ent.isDirectory()) {
      const st = await fsp.lstat(from);
      await fsp.mkdir(to, { recursive: true });
      await stage(src, dst, r, ignored);
      await fsp.chmod(to, st.mode & 0o7777);
      await fsp.utimes(to, st.atime, st.mtime);
    } else if (ent.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(from), to);
    } else {
      await fsp.link(from, to).catch(async () => fsp.cp(from, to, { preserveTimestamps: true }));
    }
  }
}
