import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { Ignore } from '@balena/dockerignore';
import { closeSync, constants, fstatSync, readdirSync } from 'node:fs';
import { InvalidArgumentError, NotFoundError } from '@tsbuild/oci';
import { fdLink, lstatBeneath, openInRoot, openRoot, resolvePathInRoot, withFd } from '@tsbuild/linux';
import { globPaths } from './path-glob.js';

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
   * filepath.Match (`*`, `?`, `[…]`) per path segment, and `**` any number of directories.
   * Every path, a wildcard's directories included, is resolved inside the context (a symlink to
   * /etc is the context's /etc, never the host's). A source that matches nothing is an error naming it.
   */
  async resolve(sources: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const src of sources) {
      const rel = path.posix.normalize(`/${src}`).slice(1);
      if (/[*?[]/.test(rel)) {
        const root = openRoot(this.dir);
        let matches: string[];
        try {
          matches = await globPaths(rel, {
            lstat: async (p) => lstatBeneath(root, resolvePathInRoot(root, p, false)),
            list: async (dir) => {
              try {
                return withFd(openInRoot(root, dir, { flags: constants.O_RDONLY | constants.O_DIRECTORY }), (fd) => readdirSync(fdLink(fd)).sort());
              } catch {
                return undefined;
              }
            },
          });
        } finally {
          closeSync(root);
        }
        if (matches.length === 0) throw new NotFoundError(`COPY source ${src}: no source files were specified (nothing in the context matches)`);
        for (const m of matches.sort()) out.push(resolveInside(this.dir, m));
        continue;
      }
      const parts = resolvePathInRoot(this.dir, rel, false);
      if (withFd(openRoot(this.dir), (root) => lstatBeneath(root, parts)) === undefined) throw new NotFoundError(`COPY source ${src}: no such file or directory in the build context`);
      out.push(path.join(this.dir, ...parts));
    }
    return out;
  }

  /**
   * An O_PATH descriptor of `p` in the context, resolved inside it (the last component too), for
   * the caller to use and close: a RUN --mount bind source. Fails with node's errno codes.
   */
  async open(p: string): Promise<number> {
    return openInRoot(this.dir, p);
  }
}

/**
 * The host path of `rel` inside `root`, with symlinks in its directory part resolved inside the
 * context (an absolute target starts again at the context root, `..` stops at it), so that a
 * source never reaches out of the context. The last component is not followed: a symlink is
 * copied as a symlink.
 */
export function resolveInside(root: string, rel: string): string {
  return path.join(root, ...resolvePathInRoot(root, rel, false));
}

/**
 * A file that may lie in the build context (the Dockerfile, an ignore file), read up to `limit`
 * bytes (the caller refuses a file that fills them): inside the context it is opened inside it (a
 * Dockerfile that is a symlink to /etc/shadow reads the context's /etc/shadow, which does not
 * exist) and must be a regular file (a FIFO there would hold the build); outside it, where the
 * user named it with -f (`<(…)` included), as the user named it. Undefined when missing.
 */
export async function readContextFile(contextDir: string, file: string, limit: number): Promise<Buffer | undefined> {
  const rel = path.relative(contextDir, file);
  const inside = rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  let fh: fsp.FileHandle;
  try {
    if (inside) {
      const fd = openInRoot(contextDir, rel, { flags: constants.O_RDONLY | constants.O_NONBLOCK });
      if (!fstatSync(fd).isFile()) {
        closeSync(fd);
        throw new InvalidArgumentError(`${file}: not a regular file`);
      }
      fh = await fsp.open(fdLink(fd), 'r').finally(() => closeSync(fd));
    } else fh = await fsp.open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
  try {
    const buf = Buffer.alloc(limit);
    let n = 0;
    while (n < limit) {
      const { bytesRead } = await fh.read(buf, n, limit - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/** An ignore file is a list of patterns: 16 MiB is far beyond any real one and keeps a hostile one out of memory. */
const MAX_IGNORE_FILE = 16 << 20;

async function readIgnore(contextDir: string, dockerfilePath: string | undefined): Promise<string[] | undefined> {
  const candidates = [...(dockerfilePath ? [`${dockerfilePath}.dockerignore`] : []), path.join(contextDir, '.dockerignore')];
  for (const c of candidates) {
    const buf = await readContextFile(contextDir, c, MAX_IGNORE_FILE + 1);
    if (buf !== undefined && buf.length > MAX_IGNORE_FILE) throw new InvalidArgumentError(`${c}: larger than ${MAX_IGNORE_FILE >> 20} MiB`);
    const text = buf?.toString('utf8');
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
