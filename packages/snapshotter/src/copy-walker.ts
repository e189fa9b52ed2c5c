import { type Stats, lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { linksOf } from '@tsbuild/linux';
import type { CopyOp } from '@tsbuild/runtime';
import type { MergedView } from './merged-view.js';

export interface Owner {
  uid: number;
  gid: number;
}

/** What a path holds: a directory, another kind of entry, or nothing. */
export type Kind = 'dir' | 'other' | undefined;

export function kindOf(st: Stats | undefined): Kind {
  return st === undefined ? undefined : st.isDirectory() ? 'dir' : 'other';
}

/**
 * The upperdir of a fresh active snapshot that a COPY (or WORKDIR) writes: its files themselves
 * (UpperWriter, direct-copy.ts) or a plan of them kept in memory (Planner, copy-layer.ts). The
 * CopyWalker decides what goes where, as the runtime's copy ops on a mounted rootfs and overlayfs
 * would leave it; a back end only carries out each decision. Paths are components already
 * resolved inside the image.
 */
export interface Upper<L> {
  /** The parent's layers, below the upperdir. */
  readonly lower: MergedView;
  /** `p` resolved in the merged view (the upperdir over the lower layers), its final symlink followed. */
  resolve(p: string): Promise<string[]>;
  /** What the merged view shows at `rel`. */
  merged(rel: string[]): Promise<Kind>;
  /** The upperdir's own entry at `rel`, whose parent is a directory of the upperdir. */
  own(rel: string[]): Kind;
  /** The upperdir's directory `rel` has nothing of a lower layer below it (it is new, or opaque). */
  pure(rel: string[]): boolean;
  /** An empty table of the hard links copied so far (kept among the files of one source or link group). */
  newLinks(): L;
  /** The table `leaf` consults and fills from here on: the current source's. */
  useLinks(links: L): void;
  /** Directory `rel`, which only a lower layer has (`below`), made in the upperdir as overlayfs copy-up makes it. */
  copyUpDir(rel: string[], below: { stat: Stats; abs: string }): void;
  /** A new directory (mkdir -p) with its mode and owner; opaque when a lower layer has that name. */
  makeDir(rel: string[], mode: number, owner: Owner, opaque: boolean): void;
  /** A new directory for a copied one, private until `finishDir`; opaque when a lower layer has that name. */
  openDir(rel: string[], opaque: boolean): void;
  /** A copied directory's owner, mode, xattrs and mtime, once its children are in. */
  finishDir(src: string, rel: string[], st: Stats, uid: number, gid: number, mode: number): void;
  /** A copied entry other than a directory (a hard link to one copied before where the source has one). */
  leaf(src: string, rel: string[], st: Stats, uid: number, gid: number, mode: number): void;
  /** Removes the upperdir's own entry at `rel`, of that kind (a directory with what is below it). */
  remove(rel: string[], kind: 'dir' | 'other'): void;
  /** What the back end cannot do: the writer's error, or the plan's way of giving up. */
  fail(message: string): never;
}

/** COPY's and WORKDIR's decisions over an upperdir (see Upper). */
export class CopyWalker<L> {
  constructor(private readonly u: Upper<L>) {}

  async copy(op: Extract<CopyOp, { op: 'copy' }>): Promise<void> {
    const sources = op.sources.map((src) => [src, lstatSync(src)] as const);
    const dest = await this.u.resolve(op.dest);
    const intoDir = op.dest.endsWith('/') || op.sources.length > 1 || (await this.u.merged(dest)) === 'dir';
    const owner = { uid: op.uid, gid: op.gid };
    const groups = new Map<number, L>();
    for (const [i, [src, st]] of sources.entries()) {
      this.u.useLinks(linksOf(op, i, groups, () => this.u.newLinks()));
      // As the helper: directories made on the way get uid:gid, copied entries keep theirs if asked.
      const entryOwner = op.keepOwners?.[i] === true ? undefined : owner;
      if (st.isDirectory()) {
        await this.mkdirAll(dest, { ...owner, mode: op.mode ?? 0o755 });
        for (const name of readdirSync(src)) await this.copyEntry(path.join(src, name), [...dest, name], entryOwner, op.mode);
      } else if (intoDir) {
        await this.mkdirAll(dest, { ...owner, mode: 0o755 });
        await this.copyEntry(src, [...dest, path.basename(src)], entryOwner, op.mode, st);
      } else {
        await this.mkdirAll(dest.slice(0, -1), { ...owner, mode: 0o755 });
        await this.copyEntry(src, dest, entryOwner, op.mode, st);
      }
    }
  }

  /**
   * mkdir -p in the image over resolved components: missing ones owned by `opts`, the last with
   * `opts.mode`, parents 0755; existing directories untouched. Only directories are made on the
   * way, so each prefix of resolved components resolves to itself.
   */
  async mkdirAll(parts: string[], opts: Owner & { mode: number }): Promise<void> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i);
      const kind = await this.u.merged(rel);
      if (kind === 'dir') continue;
      if (kind !== undefined) this.u.fail(`cannot create directory /${rel.join('/')}: a file of that name exists in the image`);
      await this.copyUp(rel.slice(0, -1));
      this.u.makeDir(rel, i === parts.length ? opts.mode : 0o755, opts, (await this.u.lower.lstatResolved(rel)) !== undefined);
    }
  }

  /** Makes each directory of `rel` exist in the upperdir, copying up those only a lower layer has. */
  private async copyUp(rel: string[]): Promise<void> {
    for (let i = 1; i <= rel.length; i++) {
      const sub = rel.slice(0, i);
      const here = this.u.own(sub);
      if (here === 'dir') continue;
      if (here !== undefined) this.u.fail(`/${sub.join('/')}: expected a directory in the upperdir, found another file type`);
      const below = await this.u.lower.entry(sub);
      if (!below?.stat.isDirectory()) this.u.fail(`/${sub.join('/')}: not a directory in the image`);
      this.u.copyUpDir(sub, below);
    }
  }

  /**
   * One source entry (never followed if a symlink) to `rel`, owned by `owner` (or by the source's
   * owner when undefined), whose parent is a directory of the image. Directories merge into an
   * existing directory; anything else replaces what is there: what only a lower layer has is
   * shadowed by the new entry, and only the upperdir's own entry goes. A new directory over a name
   * a lower layer holds is opaque, as overlayfs marks a mkdir over the whiteout an unlink left.
   */
  private async copyEntry(src: string, rel: string[], owner: Owner | undefined, mode: number | undefined, st?: Stats): Promise<void> {
    st ??= lstatSync(src);
    const parent = rel.slice(0, -1);
    await this.copyUp(parent);
    const inUpper = this.u.own(rel);
    const alone = this.u.pure(parent);
    const existing = alone ? inUpper : await this.u.merged(rel);
    if (inUpper !== undefined && !(inUpper === 'dir' && st.isDirectory())) this.u.remove(rel, inUpper);
    const uid = owner?.uid ?? st.uid;
    const gid = owner?.gid ?? st.gid;
    const m = mode ?? st.mode & 0o7777;
    if (!st.isDirectory()) {
      // A 0/0 character device in an upperdir is a whiteout, not a device: leave that to the helper.
      if (st.isCharacterDevice() && st.rdev === 0) this.u.fail(`${src}: a 0/0 character device cannot be written directly to an upperdir`);
      this.u.leaf(src, rel, st, uid, gid, m);
      return;
    }
    if (existing === 'dir') {
      if (inUpper === undefined) await this.copyUp(rel);
    } else {
      this.u.openDir(rel, !alone && (await this.u.lower.lstatResolved(rel)) !== undefined);
    }
    for (const name of readdirSync(src)) await this.copyEntry(path.join(src, name), [...rel, name], owner, mode);
    this.u.finishDir(src, rel, st, uid, gid, m);
  }
}
