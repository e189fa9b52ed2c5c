import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { Ignore } from '@balena/dockerignore';
import { closeSync, constants, fstatSync, readdirSync } from 'node:fs';
import { InvalidArgumentError, NotFoundError, SymlinkLoopError, globPaths, hasWildcard, unescapeGlob } from '@tsbuild/oci';
import { fdLink, lstatBeneath, openInRoot, openRoot, resolvePathInRoot, withFd } from '@tsbuild/linux';

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
    /** Where errors place a missing source: in the build context, or for `tsbuild copy` on this machine or in its --contextdir. */
    readonly label = 'in the build context',
  ) {}

  /**
   * With `ignore`, the rules come from that choice instead of a Dockerfile's: `false` for none
   * (`tsbuild copy` without --contextdir, whose sources are host paths), `{ file }` for an
   * explicit ignore file (--ignorefile), `{}` for the context's own .containerignore or
   * .dockerignore (buildah copy --contextdir).
   */
  static async open(contextDir: string, dockerfilePath: string | undefined, scratch: string, ignore?: false | { file?: string }, label?: string): Promise<BuildContext> {
    const st = await fsp.stat(contextDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new NotFoundError(`build context ${contextDir}: no such directory`);
    const rules = ignore === false ? undefined : ignore === undefined ? await readIgnore(contextDir, dockerfilePath) : await readIgnoreFile(contextDir, ignore.file);
    if (rules === undefined) return new BuildContext(contextDir, label);
    const ig = dockerignore({ ignorecase: false }).add(rules);
    const staged = path.join(scratch, 'context');
    await fsp.mkdir(staged, { recursive: true });
    await stage(contextDir, staged, '', (rel) => ig.ignores(rel));
    return new BuildContext(staged, label);
  }

  /**
   * The sources a COPY names, relative to the context root. Wildcards follow Go's filepath.Match
   * (`*`, `?`, `[…]`, `\` escaping the next one) per path segment, and `**` any number of
   * directories. Every path, a wildcard's directories included, is resolved inside the context (a
   * symlink to /etc is the context's /etc, never the host's). A source that is itself a symlink,
   * named or matched, is followed inside the context, as docker does: its target is copied under
   * the link's name; one that leads nowhere inside the context is missing. `""` or `.` is the whole
   * context. A missing source is an error naming it; a wildcard that matches nothing is skipped
   * (BuildKit's rule), unless nothing at all is copied: `alsoCopied` says whether the COPY has
   * other sources (here-documents, URLs) that count.
   */
  async resolve(sources: string[], alsoCopied = false): Promise<ContextSource[]> {
    const out: ContextSource[] = [];
    let unmatched: string | undefined;
    const root = openRoot(this.dir);
    try {
      for (const src of sources) {
        const rel = path.posix.normalize(`/${src}`).slice(1);
        if (hasWildcard(rel)) {
          const matches = await globPaths(rel, {
            lstat: async (p) => lstatBeneath(root, resolvePathInRoot(root, p, false)),
            list: async (dir) => {
              try {
                return withFd(openInRoot(root, dir, { flags: constants.O_RDONLY | constants.O_DIRECTORY }), (fd) => readdirSync(fdLink(fd)).sort());
              } catch {
                return undefined;
              }
            },
          });
          if (matches.length === 0) unmatched ??= src;
          for (const m of matches.sort()) out.push(this.follow(root, src, m));
          continue;
        }
        out.push(this.follow(root, src, unescapeGlob(rel)));
      }
    } finally {
      closeSync(root);
    }
    if (out.length === 0 && !alsoCopied && unmatched !== undefined) throw new NotFoundError(`COPY source ${unmatched}: no source files were specified (nothing ${this.label} matches)`);
    return out;
  }

  /** `rel` resolved inside the context, a final symlink followed there too; NotFoundError naming `src` when missing. */
  private follow(root: number, src: string, rel: string): ContextSource {
    let parts: string[] | undefined;
    try {
      parts = resolvePathInRoot(root, rel, true);
    } catch (e) {
      if (!(e instanceof SymlinkLoopError)) throw e;
    }
    if (parts === undefined || lstatBeneath(root, parts) === undefined) throw new NotFoundError(`COPY source ${src}: no such file or directory ${this.label}`);
    const named = resolvePathInRoot(root, rel, false);
    return { host: path.join(this.dir, ...parts), rel: named.join('/'), name: named.at(-1) ?? '' };
  }

  /**
   * An O_PATH descriptor of `p` in the context, resolved inside it (the last component too), for
   * the caller to use and close: a RUN --mount bind source. Fails with node's errno codes.
   */
  async open(p: string): Promise<number> {
    return openInRoot(this.dir, p);
  }
}

/** A COPY source in the build context. */
export interface ContextSource {
  /** The host path of what is copied: the source resolved inside the context, a final symlink followed. */
  host: string;
  /** Its path in the context as named (a final symlink not followed: --parents keeps this path). */
  rel: string;
  /** The name it is copied under: the link's name for a followed symlink ('' for the context root). */
  name: string;
}

/**
 * Whether the build's ignore file (see readIgnore) excludes a path relative to the context, or
 * undefined when there is none: the build checks (CopyIgnoredFile) ask before anything is staged.
 */
export async function contextIgnores(contextDir: string, dockerfilePath: string | undefined): Promise<((rel: string) => boolean) | undefined> {
  const rules = await readIgnore(contextDir, dockerfilePath);
  if (rules === undefined) return undefined;
  const ig = dockerignore({ ignorecase: false }).add(rules);
  return (rel) => ig.ignores(rel);
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

/**
 * The build's ignore file: the Dockerfile's own (`<Dockerfile>.containerignore`, BuildKit's
 * `<Dockerfile>.dockerignore`), else the context's `.containerignore`, which buildah reads before
 * `.dockerignore`, else `.dockerignore`.
 */
async function readIgnore(contextDir: string, dockerfilePath: string | undefined, names = ['.containerignore', '.dockerignore']): Promise<string[] | undefined> {
  const candidates = [...(dockerfilePath ? [`${dockerfilePath}.containerignore`, `${dockerfilePath}.dockerignore`] : []), ...names.map((n) => path.join(contextDir, n))];
  for (const c of candidates) {
    const buf = await readContextFile(contextDir, c, MAX_IGNORE_FILE + 1);
    if (buf !== undefined && buf.length > MAX_IGNORE_FILE) throw new InvalidArgumentError(`${c}: larger than ${MAX_IGNORE_FILE >> 20} MiB`);
    const text = buf?.toString('utf8');
    if (text !== undefined) return ignoreRules(text);
  }
  return undefined;
}

/** buildah's ContainerIgnoreFile: an explicit file (the user's own path, read as given), else the context's .containerignore or .dockerignore. */
async function readIgnoreFile(contextDir: string, file: string | undefined): Promise<string[] | undefined> {
  if (file === undefined) return readIgnore(contextDir, undefined);
  const st = await fsp.stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new NotFoundError(`ignore file ${file}: no such file`);
  if (st.size > MAX_IGNORE_FILE) throw new InvalidArgumentError(`${file}: larger than ${MAX_IGNORE_FILE >> 20} MiB`);
  return ignoreRules(await fsp.readFile(file, 'utf8'));
}

function ignoreRules(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
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
