import { type Stats, closeSync, lstatSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { FailedPreconditionError } from '@tsbuild/oci';
import { getXattr, isHostOnlyXattr, listXattrs, major, minor } from '@tsbuild/linux';
import type { CopyOp } from '@tsbuild/runtime';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { MergedView } from './merged-view.js';
import { BufferPool } from './buffer-pool.js';
import { END_OF_ARCHIVE, padding, type TarHeader } from './tar-format.js';
import { TarOutput } from './tar-output.js';
import { CHUNK, POOL_FREE, layerMtime, sortedNames, type TarOptions } from './diff.js';
import { OPAQUE_MARKER } from './whiteout.js';

/**
 * A COPY's layer, planned without writing a file: what `copyDirect` would leave in a fresh
 * upperdir over `parent`, kept in memory (directories, and for every other entry its source and
 * the owner, mode, xattrs and mtime the write would give it), and written as a layer tar straight
 * from the sources. Its `tar` holds the bytes `diff` would read back from that upperdir.
 *
 * Why: a COPY of 10,000 small files spent its time in the kernel creating 10,000 files in an
 * upperdir, reading them back into the layer tar, and (when the layer was stored already)
 * deleting them; the build's next step needs them only as a filesystem, and the committed
 * snapshot is unpacked from the layer blob when one does (imageSnapshot).
 *
 * The plan mirrors UpperWriter (direct-copy.ts) decision for decision; where the write would
 * depend on the kernel or the filesystem in a way the plan cannot know (a 0/0 character device,
 * xattrs outside user., trusted. and security.capability, xattrs on a symlink), `planCopyLayer`
 * returns undefined and the caller writes the files as before. It throws what the write would
 * throw only in the same sense: a caller that falls back on any error gets the writer's own.
 */
export interface CopyLayer {
  /** Nothing would be written (the upperdir would stay empty). */
  readonly empty: boolean;
  /** The layer tar (chunks lent from a pool, as diff's). Sources are read now, not at planning. */
  tar(opts?: TarOptions): Readable;
}

/** Undefined when the layer cannot be planned faithfully (see CopyLayer); then write the files. */
export async function planCopyLayer(s: OverlaySnapshotter, parent: string | undefined, op: Extract<CopyOp, { op: 'copy' }>): Promise<CopyLayer | undefined> {
  const planner = new Planner(await MergedView.open(s, parent), Math.floor(Date.now() / 1000));
  try {
    await planner.copy(op);
  } catch (e) {
    if (e instanceof Unplannable) return undefined;
    throw e;
  }
  const root = planner.root;
  return { empty: root.children.size === 0, tar: (opts) => Readable.from(emit(root, opts), { objectMode: false }) };
}

class Unplannable extends Error {}

interface Owner {
  uid: number;
  gid: number;
}

/** Owner, mode, xattrs and mtime (whole seconds) of an entry of the planned upperdir. */
interface Meta extends Owner {
  mode: number;
  mtime: number;
  xattrs: Map<string, Buffer>;
}

interface Dir {
  kind: 'dir';
  meta: Meta;
  children: Map<string, Node>;
  /** trusted.overlay.opaque=y: written as the directory's opaque marker. */
  opaque: boolean;
  /** Nothing of a lower layer below it (new, or opaque): UpperWriter's `pure`. */
  pure: boolean;
}

/** A copied non-directory. Hard links share one Inode. */
interface Leaf {
  kind: 'leaf';
  inode: Inode;
}

interface Inode {
  src: string;
  st: Stats;
  meta: Meta;
  /** Names the inode has in the planned upperdir (its nlink there). */
  names: number;
}

type Node = Dir | Leaf;

/** xattrs a copy writes as they are on ext4/xfs as root (copyXattrs); any other kind makes the layer unplannable. */
function plannableXattr(name: string): boolean {
  return name.startsWith('user.') || name.startsWith('trusted.') || name === 'security.capability';
}

/** What copyXattrs would copy from `p` (the host's own attributes left out). */
function xattrsOf(p: string, symlink: boolean): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const n of listXattrs(p)) {
    if (isHostOnlyXattr(n)) continue;
    // A symlink takes no user.* attributes (EPERM, skipped by copyXattrs): leave that to the writer.
    if (symlink || !plannableXattr(n)) throw new Unplannable();
    const v = getXattr(p, n);
    if (v !== undefined) out.set(n, v);
  }
  return out;
}

/** UpperWriter over an upperdir kept in memory: same calls, same order, same decisions. */
class Planner {
  readonly root: Dir;
  private links = new Map<string, { at: string[]; inode: Inode }>();

  constructor(
    private readonly lower: MergedView,
    /** The mtime of a directory that got a child: the time of the write, which the plan takes as now. */
    private readonly now: number,
  ) {
    this.root = { kind: 'dir', meta: { uid: 0, gid: 0, mode: 0, mtime: now, xattrs: new Map() }, children: new Map(), opaque: false, pure: false };
  }

  private node(rel: string[]): Node | undefined {
    let n: Node = this.root;
    for (const c of rel) {
      if (n.kind !== 'dir') return undefined;
      const next: Node | undefined = n.children.get(c);
      if (next === undefined) return undefined;
      n = next;
    }
    return n;
  }

  private dirAt(rel: string[]): Dir {
    const n = this.node(rel);
    if (n?.kind !== 'dir') throw new Unplannable();
    return n;
  }

  /** What the merged view (planned upperdir over the lower layers) has at `rel`: 'dir', 'other' or undefined. */
  private async merged(rel: string[]): Promise<'dir' | 'other' | undefined> {
    // Walk the plan: an entry of ours hides the lower one; below an opaque or new directory of
    // ours, or below a non-directory, nothing of the lower layers shows.
    let n: Node = this.root;
    for (const c of rel) {
      if (n.kind !== 'dir') return undefined;
      const next = n.children.get(c);
      if (next === undefined) {
        if (n.pure) return undefined;
        // The rest is read from the lower layers (no directory of ours on the way hides them).
        const st = await this.lower.lstatResolved(rel);
        return st === undefined ? undefined : st.isDirectory() ? 'dir' : 'other';
      }
      n = next;
    }
    return n.kind === 'dir' ? 'dir' : 'other';
  }

  async copy(op: Extract<CopyOp, { op: 'copy' }>): Promise<void> {
    const sources: [string, Stats][] = [];
    for (const src of op.sources) sources.push([src, lstatSync(src)]);
    const dest = await this.lower.resolve(op.dest, true);
    const destStat = await this.lower.lstatResolved(dest);
    const intoDir = op.dest.endsWith('/') || op.sources.length > 1 || destStat?.isDirectory() === true;
    const owner = { uid: op.uid, gid: op.gid };
    const groups = new Map<number, Map<string, { at: string[]; inode: Inode }>>();
    for (const [i, [src, st]] of sources.entries()) {
      const g = op.linkGroups?.[i];
      if (g === undefined) this.links = new Map();
      else this.links = groups.get(g) ?? (groups.set(g, new Map()), groups.get(g)!);
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
   * UpperWriter.mkdirAll over components `resolve` gave: none of them is a symlink in the lower
   * layers, and the plan adds only directories on the way, so each prefix resolves to itself.
   */
  private async mkdirAll(parts: string[], opts: Owner & { mode: number }): Promise<void> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i);
      const kind = await this.merged(rel);
      if (kind === 'dir') continue;
      if (kind !== undefined) throw new Unplannable(); // the writer's error: a file of that name
      await this.makeDir(rel, i === parts.length ? opts.mode : 0o755, opts);
    }
  }

  private async makeDir(rel: string[], mode: number, owner: Owner): Promise<void> {
    const parent = await this.copyUp(rel.slice(0, -1));
    const opaque = (await this.lower.lstatResolved(rel)) !== undefined;
    this.add(parent, rel.at(-1)!, { kind: 'dir', meta: { ...owner, mode, mtime: this.now, xattrs: new Map() }, children: new Map(), opaque, pure: true });
  }

  /** Each directory of `rel` in the plan, copied up from the lower layers where only they have it; returns the last. */
  private async copyUp(rel: string[]): Promise<Dir> {
    let dir = this.root;
    for (let i = 1; i <= rel.length; i++) {
      const name = rel[i - 1]!;
      const here = dir.children.get(name);
      if (here !== undefined) {
        if (here.kind !== 'dir') throw new Unplannable();
        dir = here;
        continue;
      }
      const below = await this.lower.entry(rel.slice(0, i));
      if (!below?.stat.isDirectory()) throw new Unplannable();
      const st = below.stat;
      const up: Dir = {
        kind: 'dir',
        meta: { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000), xattrs: xattrsOf(below.abs, false) },
        children: new Map(),
        opaque: false,
        pure: false,
      };
      this.add(dir, name, up);
      dir = up;
    }
    return dir;
  }

  /** Puts `node` under `dir` as `name` (creating an entry: the directory's mtime becomes the time of the write). */
  private add(dir: Dir, name: string, node: Node): void {
    dir.children.set(name, node);
    dir.meta.mtime = this.now;
  }

  private remove(dir: Dir, name: string): void {
    const n = dir.children.get(name);
    if (n === undefined) return;
    dir.children.delete(name);
    dir.meta.mtime = this.now;
    forEachLeaf(n, (l) => l.inode.names--);
  }

  private async copyEntry(src: string, rel: string[], owner: Owner | undefined, mode: number | undefined, st?: Stats): Promise<void> {
    st ??= lstatSync(src);
    const parent = await this.copyUp(rel.slice(0, -1));
    const name = rel.at(-1)!;
    const inUpper = parent.children.get(name);
    const alone = parent.pure;
    const existing = alone ? (inUpper === undefined ? undefined : inUpper.kind === 'dir' ? 'dir' : 'other') : await this.merged(rel);
    if (inUpper && !(inUpper.kind === 'dir' && st.isDirectory())) this.remove(parent, name);
    const uid = owner?.uid ?? st.uid;
    const gid = owner?.gid ?? st.gid;
    const m = mode ?? st.mode & 0o7777;
    if (st.isDirectory()) {
      let dir: Dir;
      if (existing === 'dir') {
        dir = inUpper?.kind === 'dir' ? inUpper : await this.copyUp(rel);
      } else {
        const opaque = !alone && (await this.lower.lstatResolved(rel)) !== undefined;
        dir = { kind: 'dir', meta: { uid: 0, gid: 0, mode: 0o700, mtime: this.now, xattrs: new Map() }, children: new Map(), opaque, pure: true };
        this.add(parent, name, dir);
      }
      for (const child of readdirSync(src)) await this.copyEntry(path.join(src, child), [...rel, child], owner, mode);
      // copyMetadata: owner, mode, the source's xattrs over those copied up, and its mtime.
      for (const [k, v] of xattrsOf(src, false)) dir.meta.xattrs.set(k, v);
      dir.meta = { ...dir.meta, uid, gid, mode: m, mtime: Math.floor(st.mtimeMs / 1000) };
      return;
    }
    if (st.isFile() && st.nlink >= 2) {
      const first = this.links.get(`${st.dev}:${st.ino}`);
      const there = first && this.node(first.at);
      if (first && there?.kind === 'leaf' && there.inode === first.inode) {
        first.inode.names++;
        this.add(parent, name, { kind: 'leaf', inode: first.inode });
        return;
      }
    }
    if (st.isSocket()) return; // copyNode skips sockets
    if (st.isCharacterDevice() && st.rdev === 0) throw new Unplannable();
    if (!st.isFile() && !st.isSymbolicLink() && !st.isFIFO() && !st.isCharacterDevice() && !st.isBlockDevice()) throw new Unplannable();
    const symlink = st.isSymbolicLink();
    // A symlink has no mode of its own (copyMetadata leaves it; lstat shows 0777).
    const inode: Inode = { src, st, meta: { uid, gid, mode: symlink ? 0o777 : m, mtime: Math.floor(st.mtimeMs / 1000), xattrs: xattrsOf(src, symlink) }, names: 1 };
    this.add(parent, name, { kind: 'leaf', inode });
    if (st.isFile() && st.nlink >= 2) this.links.set(`${st.dev}:${st.ino}`, { at: rel, inode });
  }
}

function forEachLeaf(n: Node, fn: (l: Leaf) => void): void {
  if (n.kind === 'leaf') fn(n);
  else for (const c of n.children.values()) forEachLeaf(c, fn);
}

/** The plan as tar bytes, entry for entry as treeTar writes an upperdir (diff.ts). */
async function* emit(root: Dir, opts: TarOptions | undefined): AsyncGenerator<Buffer> {
  const out = new TarOutput(new BufferPool(CHUNK, POOL_FREE));
  const firstName = new Map<Inode, string>();
  const header = (name: string, type: TarHeader['type'], meta: Meta, extra: Partial<TarHeader> = {}): void => {
    out.header({ name, type, mode: meta.mode, uid: meta.uid, gid: meta.gid, size: 0, mtime: layerMtime(meta.mtime, opts), linkname: '', devmajor: 0, devminor: 0, xattrs: meta.xattrs, ...extra });
  };
  const walk = function* (dir: Dir, rel: string): Generator<Buffer, void, undefined> {
    for (const n of sortedNames([...dir.children.keys()])) {
      const node = dir.children.get(n)!;
      const name = rel + n;
      if (node.kind === 'dir') {
        header(`${name}/`, 'dir', node.meta);
        if (node.opaque) header(`${name}/${OPAQUE_MARKER}`, 'file', node.meta, { mode: node.meta.mode & 0o777, mtime: 0, xattrs: new Map() });
        yield* out.drain();
        yield* walk(node, `${name}/`);
        continue;
      }
      const { inode } = node;
      const { st, meta } = inode;
      if (inode.names > 1) {
        const first = firstName.get(inode);
        if (first !== undefined) {
          header(name, 'link', meta, { linkname: first });
          yield* out.drain();
          continue;
        }
        firstName.set(inode, name);
      }
      if (st.isSymbolicLink()) header(name, 'symlink', meta, { linkname: readlinkSync(inode.src) });
      else if (st.isFIFO()) header(name, 'fifo', meta);
      else if (st.isCharacterDevice() || st.isBlockDevice()) header(name, st.isCharacterDevice() ? 'char' : 'block', meta, { devmajor: major(st.rdev), devminor: minor(st.rdev) });
      else {
        const size = st.size;
        header(name, 'file', meta, { size });
        if (size > 0) {
          const fd = openSync(inode.src, 'r');
          try {
            const read = yield* out.file(fd, size);
            if (read !== size) throw new FailedPreconditionError(`file ${inode.src} shrank from ${size} to ${read} bytes while being read into a layer`);
          } finally {
            closeSync(fd);
          }
          out.zeros(padding(size));
        }
      }
      yield* out.drain();
    }
  };
  yield* walk(root, '');
  out.zeros(END_OF_ARCHIVE.length);
  yield* out.end();
}
