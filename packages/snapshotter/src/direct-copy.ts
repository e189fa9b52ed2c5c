import { type Stats, chmodSync, lchownSync, mkdirSync, promises as fsp, rmSync, unlinkSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { FailedPreconditionError } from '@tsbuild/oci';
import { HardLinks, copyMetadata, copyNode, copyXattrs, lstatIfExists, setXattr } from '@tsbuild/linux';
import type { CopyOp } from '@tsbuild/runtime';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { MergedView } from './merged-view.js';
import { CopyWalker, type Kind, type Owner, type Upper, kindOf } from './copy-walker.js';
import { opaqueXattr } from './whiteout.js';

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
  const w = new CopyWalker(new UpperWriter(upper, lower, merged));
  for (const op of ops) {
    if (op.op === 'mkdir') await w.mkdirAll(await merged.resolve(op.path, true), { uid: op.uid, gid: op.gid, mode: op.mode });
    else await w.copy(op);
  }
}

/** Removes everything in `dir` (an upperdir a failed direct copy wrote into), keeping `dir`. */
export async function emptyDir(dir: string): Promise<void> {
  for (const n of await fsp.readdir(dir)) await fsp.rm(path.join(dir, n), { recursive: true, force: true });
}

/**
 * The upperdir's files, written as the walker decides. In the upperdir only lstat is used and
 * nothing but directories we made is descended into. The calls are synchronous, as in the helper:
 * a COPY of many small files is bound by the round trip of each async call through the thread
 * pool, not by the disk.
 */
class UpperWriter implements Upper<HardLinks> {
  /** Upperdir directories this writer made or copied up (no need to lstat them again). */
  private readonly ready = new Set<string>();
  /**
   * Of those, the ones with nothing of a lower layer below them (new, or opaque): their children
   * are read from the upperdir alone, which keeps a large COPY from walking the layers per file.
   */
  private readonly pureDirs = new Set<string>();
  /** Hard links among the files of one COPY source, kept as in the helper (runtime copy-ops). */
  private links = new HardLinks();

  constructor(
    private readonly upper: string,
    readonly lower: MergedView,
    private readonly view: MergedView,
  ) {}

  private host(rel: string[]): string {
    return rel.length === 0 ? this.upper : path.join(this.upper, ...rel);
  }

  resolve(p: string): Promise<string[]> {
    return this.view.resolve(p, true);
  }

  async merged(rel: string[]): Promise<Kind> {
    return kindOf(await this.view.lstatResolved(rel));
  }

  own(rel: string[]): Kind {
    const host = this.host(rel);
    return this.ready.has(host) ? 'dir' : kindOf(lstatIfExists(host));
  }

  pure(rel: string[]): boolean {
    return this.pureDirs.has(this.host(rel));
  }

  newLinks(): HardLinks {
    return new HardLinks();
  }

  useLinks(links: HardLinks): void {
    this.links = links;
  }

  copyUpDir(rel: string[], below: { stat: Stats; abs: string }): void {
    // mode, owner, xattrs, then mtime, as overlayfs copy-up sets them.
    const host = this.host(rel);
    mkdirSync(host);
    copyXattrs(below.abs, host);
    lchownSync(host, below.stat.uid, below.stat.gid);
    chmodSync(host, below.stat.mode & 0o7777);
    utimesSync(host, below.stat.atime, below.stat.mtime);
    this.ready.add(host);
  }

  makeDir(rel: string[], mode: number, owner: Owner, opaque: boolean): void {
    const host = this.newDir(rel, mode, opaque);
    lchownSync(host, owner.uid, owner.gid);
    chmodSync(host, mode); // mkdir(2) applies the umask
  }

  openDir(rel: string[], opaque: boolean): void {
    this.newDir(rel, 0o700, opaque);
  }

  private newDir(rel: string[], mode: number, opaque: boolean): string {
    const host = this.host(rel);
    mkdirSync(host, { mode });
    if (opaque) setXattr(host, opaqueXattr(), Buffer.from('y'));
    this.ready.add(host);
    this.pureDirs.add(host);
    return host;
  }

  finishDir(src: string, rel: string[], st: Stats, uid: number, gid: number, mode: number): void {
    copyMetadata(src, this.host(rel), st, uid, gid, mode);
  }

  leaf(src: string, rel: string[], st: Stats, uid: number, gid: number, mode: number): void {
    const dest = this.host(rel);
    if (st.isFile() && this.links.linked(st, dest)) return; // the inode has its owner, mode, xattrs and times already
    if (copyNode(src, dest, st, uid, gid, mode) && st.isFile()) this.links.copied(st, dest);
  }

  remove(rel: string[], kind: 'dir' | 'other'): void {
    const dest = this.host(rel);
    if (kind === 'dir') {
      rmSync(dest, { recursive: true, force: true });
      // Drops what the sets know of `dest` and below.
      for (const set of [this.ready, this.pureDirs]) for (const d of set) if (d === dest || d.startsWith(`${dest}/`)) set.delete(d);
    } else {
      unlinkSync(dest);
    }
  }

  fail(message: string): never {
    throw new FailedPreconditionError(message);
  }
}
