import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { getXattr, listXattrs, major, minor, mount, mountOverlay, MS, umount } from '@tsbuild/linux';
import type { Mount } from '../src/index.js';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from '../src/tar-format.js';

/**
 * Mounts what a snapshotter returned at target; returns an undo. Overlay data longer than a page
 * (deep chains) is shortened as the runtime does it (mountOverlay of @tsbuild/linux).
 */
export function mountAll(mounts: Mount[], target: string): () => void {
  for (const m of mounts) {
    if (m.type === 'overlay') {
      mountOverlay(m.source, target, 0, m.options.join(','));
    } else if (m.type === 'bind') {
      mount(m.source, target, null, MS.BIND | MS.REC);
      if (m.options.includes('ro')) mount(null, target, null, MS.REMOUNT | MS.BIND | MS.RDONLY);
    } else {
      throw new Error(`unexpected mount type ${m.type}`);
    }
  }
  return () => umount(target);
}

export interface NodeInfo {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  link?: string;
  rdev?: string;
  sha?: string;
  xattrs: Record<string, string>;
  ino?: string;
}

/** Everything about a tree that a layer should carry, for comparing two trees. */
export async function describeTree(root: string, opts: { mtimeMs?: boolean } = {}): Promise<NodeInfo[]> {
  const out: NodeInfo[] = [];
  const inodes = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    const p = rel === '' ? root : join(root, rel);
    const st = await lstat(p, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : 'other';
    const xattrs: Record<string, string> = {};
    for (const n of listXattrs(p).sort()) xattrs[n] = getXattr(p, n)!.toString('hex');
    const info: NodeInfo = {
      path: rel,
      type,
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: opts.mtimeMs ? Number(st.mtimeNs / 1000n) : Number(st.mtimeNs / 1_000_000_000n),
      size: type === 'file' ? Number(st.size) : 0,
      xattrs,
    };
    if (type === 'symlink') info.link = await readlink(p);
    if (type === 'char' || type === 'block') info.rdev = `${major(st.rdev)}:${minor(st.rdev)}`;
    if (type === 'file') info.sha = createHash('sha256').update(await readFile(p)).digest('hex');
    if (type !== 'dir' && st.nlink > 1n) {
      const k = `${st.dev}:${st.ino}`;
      info.ino = inodes.get(k) ?? rel;
      inodes.set(k, info.ino);
    }
    if (rel !== '') out.push(info);
    if (type === 'dir') for (const n of (await readdir(p)).sort()) await visit(rel === '' ? n : `${rel}/${n}`);
  };
  await visit('');
  return out;
}

/** A layer tar written entry by entry: regular files (0644, root) unless a header field says otherwise. */
export function tarOf(list: (Partial<TarHeader> & { name: string; body?: string })[]): Buffer {
  const parts: Buffer[] = [];
  for (const h of list) {
    const body = Buffer.from(h.body ?? '');
    parts.push(encodeHeader({ type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...h, size: body.length }));
    parts.push(body, Buffer.alloc(padding(body.length)));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}
