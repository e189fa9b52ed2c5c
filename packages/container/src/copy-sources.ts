import { promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Ignore } from '@balena/dockerignore';
import { InvalidArgumentError, NotFoundError, hasWildcard, unescapeGlob } from '@tsbuild/oci';
import type { CopyOp } from '@tsbuild/runtime';
import { download, extractArchive, isArchive } from './add-sources.js';
import type { BuildContext } from './context.js';
import type { MergedView } from '@tsbuild/snapshotter';
import { makeParents, stageTree } from './staged-tree.js';

const dockerignore = createRequire(import.meta.url)('@balena/dockerignore') as (opts?: { ignorecase?: boolean }) => Ignore;

/** A COPY or ADD as the helper (or the direct path) carries it out: host sources, a destination, owners. */
export type CopyFiles = Extract<CopyOp, { op: 'copy' }>;

/** One source of a COPY/ADD: a pattern (context, --from, or for ADD a URL), or a host file already staged (a here-document). */
export type CopySource = string | { file: string };

/**
 * A COPY or ADD, in the words of the Dockerfile and of `tsbuild copy`/`add`: the one description
 * both turn into files. Errors name the instruction (`COPY --from=x y: …`); the Dockerfile
 * interpreter adds the line.
 */
export interface CopySpec {
  kind: 'COPY' | 'ADD';
  /** Sources as written: wildcards, `\` escaping a wildcard character. */
  sources: CopySource[];
  /** The destination as written; relative to `workdir`; a trailing `/` means a directory. */
  dest: string;
  workdir: string;
  /** --from: a stage, container or image, as the caller resolves it with `fromView`. */
  from?: string;
  chown?: string;
  chmod?: string;
  /** ADD --checksum for a URL source. */
  checksum?: string;
  exclude?: string[];
  parents?: boolean;
}

/** What resolving a CopySpec needs from its caller. */
export interface CopySourceEnv {
  /** A private scratch directory for staged files; the caller removes it. */
  staging: string;
  context(): Promise<BuildContext>;
  /** The filesystem --from names (a stage, a container, an image); throws a clear error when there is none. */
  fromView(from: string): Promise<MergedView>;
  /** --chown resolved against the destination's /etc/passwd and /etc/group. */
  owner(spec: string): Promise<{ uid: number; gid: number }>;
  signal?: AbortSignal;
}

/**
 * The files a COPY or ADD puts into the image, staged as host paths: context files (after
 * .dockerignore), here-documents, another stage's, container's or image's files read out of its
 * snapshots (--from), ADD's unpacked archives and downloads.
 */
export async function resolveCopy(spec: CopySpec, env: CopySourceEnv): Promise<CopyFiles> {
  const { kind, from } = spec;
  const isAdd = kind === 'ADD';
  const { staging } = env;
  let dest = spec.dest;
  const trailing = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
  dest = path.posix.resolve(spec.workdir || '/', dest) + (trailing && dest !== '/' ? '/' : '');
  const hostPaths: string[] = [];
  /** For --parents: each host path's path inside its source tree (context or --from image). */
  const relOf = new Map<string, { rel: string; like?: string }>();
  const contextSources: string[] = [];
  /** Host paths whose entries keep their owners: another stage's or image's files, unpacked archives. */
  const keepOf = new Set<string>();
  let unmatched: string | undefined;
  const patterns = spec.sources.filter((s): s is string => typeof s === 'string');
  // BuildKit: a checksum belongs to a download; given for anything else it would check nothing.
  if (spec.checksum !== undefined && !patterns.some((s) => isAdd && /^https?:\/\//.test(s))) {
    throw new InvalidArgumentError(`${kind} --checksum=${spec.checksum}: only an http(s) source can be checked against a checksum`);
  }
  for (const src of spec.sources) {
    if (typeof src !== 'string') hostPaths.push(src.file);
    else if (isAdd && /^https?:\/\//.test(src)) {
      hostPaths.push(await download(src, path.join(staging, `url-${hostPaths.length}`), spec.checksum, env.signal));
    } else if (from === undefined) contextSources.push(src);
    else {
      const found = await fromSources(kind, await env.fromView(from), from, src, path.join(staging, `from-${hostPaths.length}`));
      if (found.length === 0) unmatched ??= src;
      for (const m of found) {
        hostPaths.push(m.host);
        keepOf.add(m.host);
        relOf.set(m.host, { rel: pivot(src, m.path) });
      }
    }
  }
  if (contextSources.length > 0) {
    const ctx = await env.context();
    const resolved = await ctx.resolve(contextSources, hostPaths.length > 0);
    const pivotSrc = contextSources.find((c) => c.includes('/./')) ?? '';
    for (const [i, cs] of resolved.entries()) {
      let p = cs.host;
      const st = await fsp.stat(p);
      if (!st.isDirectory() && cs.name !== '' && path.basename(p) !== cs.name) {
        // A followed symlink: its target is copied under the link's name (docker's rule).
        p = path.join(staging, `link-${i}`, cs.name);
        await fsp.mkdir(path.dirname(p), { recursive: true });
        await stageTree(cs.host, p);
      }
      relOf.set(p, { rel: pivot(pivotSrc, cs.rel), like: ctx.dir });
      if (isAdd && (await isArchive(p))) {
        // ADD unpacks a local archive into the destination directory, with the owners it records.
        const dir = path.join(staging, `archive-${hostPaths.length}`);
        await extractArchive(p, dir);
        hostPaths.push(dir);
        keepOf.add(dir);
        if (!dest.endsWith('/')) dest += '/';
      } else hostPaths.push(p);
    }
  }
  // A wildcard that matches nothing is skipped, unless nothing at all is left to copy (BuildKit).
  if (hostPaths.length === 0) throw new NotFoundError(`${kind}${from !== undefined ? ` --from=${from}` : ''} ${unmatched ?? patterns.join(' ')}: no source files were specified (nothing matches)`);
  const excludes = spec.exclude ?? [];
  const parents = spec.parents === true;
  if (excludes.length > 0 || parents) {
    // Staged as a filtered tree of hard links: --exclude drops entries by docker's ignore rules
    // (matched against the path inside each source, and against the source's own name), and
    // --parents keeps each source's directories from the context (or --from) root.
    const ig = dockerignore({ ignorecase: false }).add(excludes);
    const staged: string[] = [];
    const stagedKeep = new Set<string>();
    const root = path.join(staging, 'parents');
    for (const [i, p] of hostPaths.entries()) {
      const base = path.basename(p);
      const top = relOf.get(p)?.rel ?? base;
      if (excludes.length > 0 && top !== '' && (ig.ignores(top) || ig.ignores(base))) continue;
      const skip = (r: string) => ig.ignores(r) || (top !== '' && ig.ignores(`${top}/${r}`));
      if (parents && relOf.has(p)) {
        const info = relOf.get(p)!;
        await fsp.mkdir(root, { recursive: true });
        await makeParents(root, info.rel, info.like);
        await stageTree(p, path.join(root, info.rel), skip);
        if (!staged.includes(root)) staged.push(root);
        if (keepOf.has(p)) stagedKeep.add(root);
      } else {
        const out = path.join(staging, `excluded-${i}`, base);
        await fsp.mkdir(path.dirname(out), { recursive: true });
        await stageTree(p, out, skip);
        staged.push(out);
        if (keepOf.has(p)) stagedKeep.add(out);
      }
    }
    if (staged.length === 0) throw new InvalidArgumentError(`${kind}: every source is excluded by --exclude`);
    hostPaths.splice(0, hostPaths.length, ...staged);
    keepOf.clear();
    for (const k of stagedKeep) keepOf.add(k);
    if (parents && !dest.endsWith('/')) dest += '/';
  }
  if (hostPaths.length > 1 && !dest.endsWith('/')) {
    throw new InvalidArgumentError(`When using ${kind} with more than one source file, the destination must be a directory and end with a /`);
  }
  let uid = 0;
  let gid = 0;
  if (spec.chown !== undefined) ({ uid, gid } = await env.owner(spec.chown));
  let mode: number | undefined;
  if (spec.chmod !== undefined) {
    if (!/^[0-7]{3,4}$/.test(spec.chmod)) throw new InvalidArgumentError(`${kind} --chmod=${spec.chmod}: want an octal mode such as 755`);
    mode = parseInt(spec.chmod, 8);
  }
  // Without --chown, COPY --from keeps the owners the files have in that stage or image, and ADD
  // those an archive records (docker and BuildKit); everything else is 0:0.
  const keepOwners = spec.chown === undefined && keepOf.size > 0 ? hostPaths.map((p) => keepOf.has(p)) : undefined;
  return { op: 'copy', sources: hostPaths, dest, uid, gid, ...(mode !== undefined ? { mode } : {}), ...(keepOwners ? { keepOwners } : {}) };
}

/**
 * COPY --from: sources out of another filesystem, read through a MergedView and staged with their
 * owners. As in the context, a source that is a symlink is followed inside that filesystem and
 * copied under the link's name; a wildcard may match nothing (an empty answer), a named source
 * must exist.
 */
async function fromSources(kind: string, view: MergedView, from: string, src: string, staging: string): Promise<{ host: string; path: string }[]> {
  const matches = hasWildcard(src) ? await view.glob(src) : [unescapeGlob(src)];
  const out: { host: string; path: string }[] = [];
  for (const [i, m] of matches.entries()) {
    try {
      const named = await view.resolve(m, false);
      const target = path.join(staging, String(i), named.at(-1) ?? 'root');
      await fsp.mkdir(path.dirname(target), { recursive: true });
      await view.materialize(m, target, true);
      out.push({ host: target, path: named.join('/') });
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      throw new NotFoundError(`${kind} --from=${from} ${src}: no such file or directory in ${from}`);
    }
  }
  return out;
}

/** For --parents with a `/./` pivot: the part of `rel` after the pivot's prefix. */
function pivot(src: string, rel: string): string {
  const i = src.indexOf('/./');
  if (i < 0) return rel;
  const prefix = path.posix.normalize(`/${src.slice(0, i)}`).slice(1);
  return prefix !== '' && rel.startsWith(`${prefix}/`) ? rel.slice(prefix.length + 1) : rel;
}
