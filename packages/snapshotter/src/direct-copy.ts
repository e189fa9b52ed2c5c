import { type Stats, lstatSync, mkdirSync, promises as fsp, readdirSync, rmSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { FailedPreconditionError } from '@tsbuild/oci';
import { HardLinks, copyMetadata, copyNode, copyXattrs, linksOf, lstatIfExists, setXattr } from '@tsbuild/linux';
import type { CopyOp } from '@tsbuild/runtime';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { MergedView } from './merged-view.js';
import { opaqueXattr } from './whiteout.js';

/** overlayfs marks a directory that hides everything below it with this xattr (Documentation/filesystems/overlayfs.rst). */

/**
 * COPY/ADD and WORKDIR written straight into a fresh active snapshot's upperdir, with no helper
 * process and no mount: the same semantics as the runtime's copy ops on a mounted rootfs, and the
 * upperdir overlayfs itself would have left behind.
 *
 * - Destinations resolve inside the image (a MergedView of the upperdir over the parent chain), so
 *   symlinks in them never reach the host; whether the destination is an existing directory is
 *   read from that view.
 * - A directory of a lower layer that gets a new child is first "copied up": made in the upperdir
 *   with the lower directory's mode, owner, mtime and xattrs, as overlayfs copy-up does.
 * - A new directory over a name a lower layer holds (a file, or a directory we replaced) is marked
 *   opaque, as overlayfs does for a mkdir over the whiteout the unlink left; a non-directory over
 *   a lower entry simply shadows it, which is what the create over the whiteout leaves too.
 * - In the upperdir only lstat is used and nothing but directories we made is descended into.
 *
 * `upper` must be empty when called: on failure the caller empties it again and takes the slow path.
 */
export async function copyDirect(s: OverlaySnapshotter, parent: string | undefined, upper: string, ops: CopyOp[]): Promise<void> {
  const lower = await MergedView.open(s, parent);
  const merged = await MergedView.open(s, parent, upper);
  const w = new UpperWriter(upper, lower, merged);
  for (const op of ops) {
    if (op.op === 'mkdir') await w.mkdirAll(op.path, { uid: op.uid, gid: op.gid, mode: op.mode });
    else await w.copy(op);
  }
}

/** Removes everything in `dir` (an upperdir a failed direct copy wrote into), keeping `dir`. */
export async function emptyDir(dir: string): Promise<void> {
  for (const n of await fsp.readdir(dir)) await fsp.rm(path.join(dir, n), { recursive: true, force: true });
}

interface Owner {
  uid: number;
  gid: number;
}

class UpperWriter {
  /** Upperdir directories this writer made or copied up (no need to lstat them again). */
  private readonly ready = new Set<string>();
  /**
   * Of those, the ones with nothing of a lower layer below them (new, or opaque): their children
   * are read from the upperdir alone, which keeps a large COPY from walking the layers per file.
   */
  private readonly pure = new Set<string>();
  /** Hard links among the files of one COPY source, kept as in the helper (runtime copy-ops). */
  private links = new HardLinks();

  constructor(
    private readonly upper: string,
    private readonly lower: MergedView,
    private readonly merged: MergedView,
  ) {}

  private host(rel: string[]): string {
    return rel.length === 0 ? this.upper : path.join(this.upper, ...rel);
  }

  async copy(op: Extract<CopyOp, { op: 'copy' }>): Promise<void> {
    const sources: [string, Stats][] = [];
    for (const src of op.sources) sources.push([src, await fsp.lstat(src)]);
    const dest = await this.merged.resolve(op.dest, true);
    const destStat = await this.merged.lstatResolved(dest);
    const intoDir = op.dest.endsWith('/') || op.sources.length > 1 || destStat?.isDirectory() === true;
    const owner = { uid: op.uid, gid: op.gid };
    const destPath = `/${dest.join('/')}`;
    const groups = new Map<number, HardLinks>();
    for (const [i, [src, st]] of sources.entries()) {
      this.links = linksOf(op, i, groups);
      // As the helper: directories made on the way get uid:gid, copied entries keep theirs if asked.
      const entryOwner = op.keepOwners?.[i] === true ? undefined : owner;
      if (st.isDirectory()) {
        await this.mkdirAll(destPath, { ...owner, mode: op.mode ?? 0o755 });
        for (const name of await fsp.readdir(src)) await this.copyEntry(path.join(src, name), [...dest, name], entryOwner, op.mode);
      } else if (intoDir) {
        await this.mkdirAll(destPath, { ...owner, mode: 0o755 });
        await this.copyEntry(src, [...dest, path.basename(src)], entryOwner, op.mode, st);
      } else {
        await this.mkdirAll(`/${dest.slice(0, -1).join('/')}`, { ...owner, mode: 0o755 });
        await this.copyEntry(src, dest, entryOwner, op.mode, st);
      }
    }
  }

  /** mkdir -p in the image: missing components owned by `opts`, the last with `opts.mode`, parents 0755; existing directories untouched. */
  async mkdirAll(dir: string, opts: Owner & { mode: number }): Promise<void> {
    const parts = dir.split('/').filter((c) => c.length > 0);
    for (let i = 1; i <= parts.length; i++) {
      // Each prefix again: an existing component may be a symlink elsewhere in the image.
      const rel = await this.merged.resolve(`/${parts.slice(0, i).join('/')}`, true);
      const st = await this.merged.lstatResolved(rel);
      if (st?.isDirectory()) continue;
      if (st !== undefined) throw new FailedPreconditionError(`cannot create directory /${rel.join('/')}: a file of that name exists in the image`);
      const mode = i === parts.length ? opts.mode : 0o755;
      await this.makeDir(rel, mode, opts);
    }
  }

  /** A new directory in the upperdir at `rel` (absent from the merged view), opaque if a lower layer has that name. */
  private async makeDir(rel: string[], mode: number, owner: Owner): Promise<void> {
    await this.copyUp(rel.slice(0, -1));
    const host = this.host(rel);
    await fsp.mkdir(host, { mode });
    if ((await this.lower.lstatResolved(rel)) !== undefined) setXattr(host, opaqueXattr(), Buffer.from('y'));
    this.ready.add(host);
    this.pure.add(host);
    await fsp.lchown(host, owner.uid, owner.gid);
    await fsp.chmod(host, mode); // mkdir(2) applies the umask
  }

  /**
   * Makes each directory of `rel` exist in the upperdir, copying up those only a lower layer has
   * (mode, owner, xattrs, then mtime, as overlayfs copy-up sets them).
   */
  private async copyUp(rel: string[]): Promise<void> {
    for (let i = 1; i <= rel.length; i++) {
      const sub = rel.slice(0, i);
      const host = this.host(sub);
      if (this.ready.has(host)) continue;
      const here = await lstatOrUndefined(host);
      if (here?.isDirectory()) continue;
      if (here !== undefined) throw new FailedPreconditionError(`upperdir ${host}: expected a directory, found another file type`);
      const below = await this.lower.entry(sub);
      if (!below?.stat.isDirectory()) throw new FailedPreconditionError(`/${sub.join('/')}: not a directory in the image`);
      await fsp.mkdir(host);
      copyXattrs(below.abs, host);
      await fsp.lchown(host, below.stat.uid, below.stat.gid);
      await fsp.chmod(host, below.stat.mode & 0o7777);
      await fsp.utimes(host, below.stat.atime, below.stat.mtime);
      this.ready.add(host);
    }
  }

  /**
   * One source entry (never followed if a symlink) to `rel`, owned by `owner` (or by the source's
   * owner when undefined), whose parent is a directory of the
   * image. Directories merge into an existing directory; anything else replaces what is there.
   * The per-entry calls are synchronous, as in the helper: a COPY of many small files is bound by
   * the round trip of each async call through the thread pool, not by the disk.
   */
  private async copyEntry(src: string, rel: string[], owner: Owner | undefined, mode: number | undefined, st?: Stats): Promise<void> {
    st ??= lstatSync(src);
    await this.copyUp(rel.slice(0, -1));
    const dest = this.host(rel);
    const inUpper = lstatIfExists(dest);
    const alone = this.pure.has(path.dirname(dest));
    const existing = alone ? inUpper : await this.merged.lstatResolved(rel);
    if (inUpper && !inUpper.isDirectory() && !st.isDirectory()) {
      unlinkSync(dest);
    } else if (inUpper && !(inUpper.isDirectory() && st.isDirectory())) {
      rmSync(dest, { recursive: true, force: true });
      this.forget(dest);
    }
    if (st.isDirectory()) {
      if (existing?.isDirectory()) {
        if (!inUpper) await this.copyUp(rel);
      } else {
        mkdirSync(dest, { mode: 0o700 });
        if (!alone && (await this.lower.lstatResolved(rel)) !== undefined) setXattr(dest, opaqueXattr(), Buffer.from('y'));
        this.ready.add(dest);
        this.pure.add(dest);
      }
      for (const name of readdirSync(src)) await this.copyEntry(path.join(src, name), [...rel, name], owner, mode);
    } else {
      // What is only in a lower layer is shadowed by the new entry; only our own upper entry went.
      if (st.isFile() && this.links.linked(st, dest)) return; // the inode has its owner, mode, xattrs and times already
      // A 0/0 character device in an upperdir is a whiteout, not a device: leave that to the helper.
      if (st.isCharacterDevice() && st.rdev === 0) throw new FailedPreconditionError(`${src}: a 0/0 character device cannot be written directly to an upperdir`);
      if (copyNode(src, dest, st, owner?.uid ?? st.uid, owner?.gid ?? st.gid, mode ?? st.mode & 0o7777) && st.isFile()) this.links.copied(st, dest);
      return;
    }
    copyMetadata(src, dest, st, owner?.uid ?? st.uid, owner?.gid ?? st.gid, mode ?? st.mode & 0o7777);
  }

  /** Drops what the sets know of `dir` and below, after it was removed. */
  private forget(dir: string): void {
    for (const set of [this.ready, this.pure]) for (const d of set) if (d === dir || d.startsWith(`${dir}/`)) set.delete(d);
  }
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}
