import { type Stats, closeSync, openSync, readlinkSync } from 'node:fs';
import { Readable } from 'node:stream';
import { FailedPreconditionError } from '@tsbuild/oci';
import { getXattr, isHostOnlyXattr, listXattrs, major, minor } from '@tsbuild/linux';
import type { CopyOp } from '@tsbuild/runtime';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { MergedView } from './merged-view.js';
import { CopyWalker, type Kind, type Owner, type Upper, kindOf } from './copy-walker.js';
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
 * The plan takes the CopyWalker's decisions, as UpperWriter (direct-copy.ts) does; where the
 * write would depend on the kernel or the filesystem in a way the plan cannot know (a 0/0 character device,
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
    await new CopyWalker(planner).copy(op);
  } catch (e) {
    if (e instanceof Unplannable) return undefined;
    throw e;
  }
  const root = planner.root;
  return { empty: root.children.size === 0, tar: (opts) => Readable.from(emit(root, opts), { objectMode: false }) };
}

class Unplannable extends Error {}

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

/** Of each source inode with more than one name (`dev:ino`): where its first copy is, and the planned inode. */
type Links = Map<string, { at: string[]; inode: Inode }>;

function nodeKind(n: Node | undefined): Kind {
  return n === undefined ? undefined : n.kind === 'dir' ? 'dir' : 'other';
}

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

/** The upperdir kept in memory: the CopyWalker's decisions, carried out on a tree. */
class Planner implements Upper<Links> {
  readonly root: Dir;
  private links: Links = new Map();

  constructor(
    readonly lower: MergedView,
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

  /** The plan starts empty and holds one COPY: until it has entries, the lower layers are the merged view. */
  resolve(p: string): Promise<string[]> {
    if (this.root.children.size > 0) throw new Unplannable();
    return this.lower.resolve(p, true);
  }

  async merged(rel: string[]): Promise<Kind> {
    // Walk the plan: an entry of ours hides the lower one; below an opaque or new directory of
    // ours, or below a non-directory, nothing of the lower layers shows.
    let n: Node = this.root;
    for (const c of rel) {
      if (n.kind !== 'dir') return undefined;
      const next = n.children.get(c);
      if (next === undefined) {
        if (n.pure) return undefined;
        // The rest is read from the lower layers (no directory of ours on the way hides them).
        return kindOf(await this.lower.lstatResolved(rel));
      }
      n = next;
    }
    return nodeKind(n);
  }

  own(rel: string[]): Kind {
    return nodeKind(this.node(rel));
  }

  pure(rel: string[]): boolean {
    return this.dirAt(rel).pure;
  }

  newLinks(): Links {
    return new Map();
  }

  useLinks(links: Links): void {
    this.links = links;
  }

  copyUpDir(rel: string[], below: { stat: Stats; abs: string }): void {
    const st = below.stat;
    this.add(rel, {
      kind: 'dir',
      meta: { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000), xattrs: xattrsOf(below.abs, false) },
      children: new Map(),
      opaque: false,
      pure: false,
    });
  }

  makeDir(rel: string[], mode: number, owner: Owner, opaque: boolean): void {
    this.add(rel, { kind: 'dir', meta: { ...owner, mode, mtime: this.now, xattrs: new Map() }, children: new Map(), opaque, pure: true });
  }

  openDir(rel: string[], opaque: boolean): void {
    this.makeDir(rel, 0o700, { uid: 0, gid: 0 }, opaque);
  }

  finishDir(src: string, rel: string[], st: Stats, uid: number, gid: number, mode: number): void {
    // copyMetadata: owner, mode, the source's xattrs over those copied up, and its mtime.
    const dir = this.dirAt(rel);
    for (const [k, v] of xattrsOf(src, false)) dir.meta.xattrs.set(k, v);
    dir.meta = { ...dir.meta, uid, gid, mode, mtime: Math.floor(st.mtimeMs / 1000) };
  }

  leaf(src: string, rel: string[], st: Stats, uid: number, gid: number, mode: number): void {
    if (st.isFile() && st.nlink >= 2) {
      const first = this.links.get(`${st.dev}:${st.ino}`);
      const there = first && this.node(first.at);
      if (first && there?.kind === 'leaf' && there.inode === first.inode) {
        first.inode.names++;
        this.add(rel, { kind: 'leaf', inode: first.inode });
        return;
      }
    }
    if (st.isSocket()) return; // copyNode skips sockets
    if (!st.isFile() && !st.isSymbolicLink() && !st.isFIFO() && !st.isCharacterDevice() && !st.isBlockDevice()) throw new Unplannable();
    const symlink = st.isSymbolicLink();
    // A symlink has no mode of its own (copyMetadata leaves it; lstat shows 0777).
    const inode: Inode = { src, st, meta: { uid, gid, mode: symlink ? 0o777 : mode, mtime: Math.floor(st.mtimeMs / 1000), xattrs: xattrsOf(src, symlink) }, names: 1 };
    this.add(rel, { kind: 'leaf', inode });
    if (st.isFile() && st.nlink >= 2) this.links.set(`${st.dev}:${st.ino}`, { at: rel, inode });
  }

  remove(rel: string[]): void {
    const dir = this.dirAt(rel.slice(0, -1));
    const name = rel.at(-1)!;
    const n = dir.children.get(name);
    if (n === undefined) return;
    dir.children.delete(name);
    dir.meta.mtime = this.now;
    forEachLeaf(n, (l) => l.inode.names--);
  }

  fail(): never {
    // The writer's error, which a caller that writes the files instead will meet.
    throw new Unplannable();
  }

  /** Puts `node` at `rel` (creating an entry: its directory's mtime becomes the time of the write). */
  private add(rel: string[], node: Node): void {
    const dir = this.dirAt(rel.slice(0, -1));
    dir.children.set(rel.at(-1)!, node);
    dir.meta.mtime = this.now;
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
