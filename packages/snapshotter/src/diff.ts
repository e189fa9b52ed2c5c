import type { BigIntStats } from 'node:fs';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { getXattr, listXattrs, major, minor } from '@tsbuild/linux';
import { FailedPreconditionError } from '@tsbuild/oci';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from './tar-format.js';
import { isHostOnlyXattr, isOverlayWhiteout, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX } from './whiteout.js';

export interface TarOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it, for reproducible layers. */
  sourceDateEpoch?: number;
}

/** The layer tar of an active snapshot's changes, read from its upperdir. */
export function diff(s: OverlaySnapshotter, key: string, opts?: TarOptions): Readable {
  return Readable.from(
    (async function* () {
      yield* treeTar(await s.fsDir(key), true, opts);
    })(),
    { objectMode: false },
  );
}

/** A whole directory tree as one layer tar (for `tsbuild import DIR`); same entry format, no whiteout conversion. */
export function tarDirectory(dir: string, opts?: TarOptions): Readable {
  return Readable.from(treeTar(dir, false, opts), { objectMode: false });
}

/**
 * Walks `root` depth-first (a directory before its children, children in bytewise order of
 * their names on disk, so a whiteout `.wh.x` sits where `x` would) and yields tar bytes. Entry names are relative, without './'; directories end in '/'. Only
 * seconds of mtime are written, like Docker and containerd, so that a layer's digest does not
 * depend on the filesystem's timestamp granularity.
 */
async function* treeTar(root: string, overlay: boolean, opts: TarOptions | undefined): AsyncGenerator<Buffer> {
  const links = new Map<string, string>();
  const epoch = opts?.sourceDateEpoch;
  const mtimeOf = (st: BigIntStats): number => {
    const sec = Number(st.mtimeNs / 1_000_000_000n) - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1 : 0);
    return epoch !== undefined && sec > epoch ? epoch : sec;
  };

  async function* walk(dirPath: string, rel: string): AsyncGenerator<Buffer> {
    const names = (await readdir(dirPath)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const n of names) {
      const p = join(dirPath, n);
      const name = rel + n;
      const st = await lstat(p, { bigint: true });
      const base: Omit<TarHeader, 'name' | 'type'> = {
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: 0,
        mtime: mtimeOf(st),
        linkname: '',
        devmajor: 0,
        devminor: 0,
        xattrs: new Map(),
      };
      // overlayfs whiteouts may share one inode (a hardlink to the workdir's whiteout), so
      // they are recognised before the hardlink check.
      if (overlay && isOverlayWhiteout(st)) {
        yield encodeHeader({ ...base, name: rel + WHITEOUT_PREFIX + n, type: 'file', mode: 0 });
        continue;
      }
      if (st.isSocket()) continue; // tar cannot carry sockets; they are recreated at run time
      base.xattrs = readXattrs(p);
      if (st.isDirectory()) {
        const opaque = overlay && getXattr(p, OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
        yield encodeHeader({ ...base, name: `${name}/`, type: 'dir' });
        if (opaque) yield encodeHeader({ ...base, name: `${name}/${OPAQUE_MARKER}`, type: 'file', mode: 0, xattrs: new Map() });
        yield* walk(p, `${name}/`);
        continue;
      }
      const inode = `${st.dev}:${st.ino}`;
      if (st.nlink > 1n) {
        const first = links.get(inode);
        if (first !== undefined) {
          yield encodeHeader({ ...base, name, type: 'link', linkname: first });
          continue;
        }
        links.set(inode, name);
      }
      if (st.isSymbolicLink()) {
        yield encodeHeader({ ...base, name, type: 'symlink', linkname: await readlink(p) });
      } else if (st.isFIFO()) {
        yield encodeHeader({ ...base, name, type: 'fifo' });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        yield encodeHeader({ ...base, name, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major(st.rdev), devminor: minor(st.rdev) });
      } else if (st.isFile()) {
        const size = Number(st.size);
        yield encodeHeader({ ...base, name, type: 'file', size });
        if (size > 0) {
          let read = 0;
          for await (const chunk of createReadStream(p, { start: 0, end: size - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
            read += chunk.length;
            yield chunk;
          }
          if (read !== size) throw new FailedPreconditionError(`file ${p} shrank from ${size} to ${read} bytes while being read into a layer`);
          const pad = padding(size);
          if (pad > 0) yield Buffer.alloc(pad);
        }
      }
    }
  }

  yield* walk(root, '');
  yield END_OF_ARCHIVE;
}

function readXattrs(p: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const n of listXattrs(p)) {
    if (isHostOnlyXattr(n)) continue;
    const v = getXattr(p, n);
    if (v !== undefined) out.set(n, v);
  }
  return out;
}
