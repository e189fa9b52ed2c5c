import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, lstat, lutimes, mkdir, open, rm, symlink, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { lchown, mknod, S_IFBLK, S_IFCHR, S_IFIFO, setXattr } from '@tsbuild/linux';
import { InvalidArgumentError, type Digest } from '@tsbuild/oci';
import { decompressed } from './decompress.js';
import { readTar, type TarEntry } from './tar-reader.js';
import { isHostOnlyXattr, OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX } from './whiteout.js';

/**
 * Unpacks a layer (gzip, zstd or plain tar, detected by magic) into dir; returns the diffID
 * (sha256 of the uncompressed tar, every byte of it, trailing padding included).
 *
 * OCI whiteouts become overlayfs ones (see whiteout.ts), so dir can serve as an upperdir or
 * lowerdir directly. Safety, so that a hostile layer cannot touch anything outside dir:
 * - absolute entry names are taken relative to dir (old tars write '/etc/…'); a name or
 *   hardlink target with a '..' component is rejected (InvalidArgumentError), not cleaned:
 *   a layer that tries to climb out is malformed and silently rewriting it hides that;
 * - every parent component is lstat'ed and must be a real directory: a symlink there is
 *   rejected, so writes never follow links (a final-component symlink is replaced, not followed);
 * - a hardlink must point at an existing non-directory inside dir, reached the same way.
 * Ownership, mode (after chown, which clears setuid/setgid and security.capability), xattrs
 * and mtimes are restored; directory mtimes last, as creating children changes them.
 */
export async function apply(layer: Readable, dir: string): Promise<{ diffID: Digest }> {
  const root = resolve(dir);
  const rootStat = await lstat(root);
  if (!rootStat.isDirectory()) throw new InvalidArgumentError(`cannot apply a layer into ${root}: not a directory`);
  const hash = createHash('sha256');
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const c of decompressed(layer)) {
      hash.update(c);
      yield c;
    }
  }
  const w = new TreeWriter(root);
  for await (const e of readTar(hashed())) await w.entry(e);
  await w.finish();
  return { diffID: `sha256:${hash.digest('hex')}` };
}

class TreeWriter {
  /** Relative paths known to be real directories (not symlinks) under root. */
  private readonly dirs = new Set<string>(['']);
  private readonly dirTimes: [string, number][] = [];

  constructor(private readonly root: string) {}

  async entry(e: TarEntry): Promise<void> {
    const comps = clean(e.name, e.name);
    const base = comps.at(-1);
    const parent = comps.slice(0, -1);
    if (base !== undefined && base.startsWith(WHITEOUT_PREFIX)) {
      await this.parents(parent, e.name);
      if (base === OPAQUE_MARKER) {
        // overlayfs: an opaque directory hides everything below it in lower layers.
        setXattr(this.abs(parent), OVERLAY_OPAQUE_XATTR, 'y');
        return;
      }
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') throw new InvalidArgumentError(`layer entry "${e.name}": whiteout of "${victim}" is not allowed`);
      const p = this.abs([...parent, victim]);
      await this.removeExisting(p);
      // overlayfs: a character device 0/0 is a whiteout.
      mknod(p, S_IFCHR, 0, 0);
      return;
    }
    if (comps.length === 0) {
      if (e.type !== 'dir') throw new InvalidArgumentError(`layer entry "${e.name}": the root can only be a directory`);
      await this.metadata(this.root, e, true);
      return;
    }
    await this.parents(parent, e.name);
    const p = this.abs(comps);
    const rel = comps.join('/');
    switch (e.type) {
      case 'dir': {
        const st = await lstat(p).catch(() => undefined);
        if (st === undefined || !st.isDirectory()) {
          await this.removeExisting(p);
          await mkdir(p, 0o700);
        }
        this.dirs.add(rel);
        await this.metadata(p, e, true);
        return;
      }
      case 'file': {
        await this.removeExisting(p);
        const fh = await open(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          for await (const chunk of e.body) await fh.write(chunk);
        } finally {
          await fh.close();
        }
        await this.metadata(p, e, false);
        return;
      }
      case 'link': {
        const target = clean(e.linkname, e.name);
        const tp = this.abs(target);
        await this.parents(target.slice(0, -1), e.name, false);
        const st = target.length === 0 ? undefined : await lstat(tp).catch(() => undefined);
        if (st === undefined) throw new InvalidArgumentError(`layer entry "${e.name}": hardlink target "${e.linkname}" does not exist in the layer`);
        if (st.isDirectory()) throw new InvalidArgumentError(`layer entry "${e.name}": hardlink target "${e.linkname}" is a directory`);
        if (tp === p) return;
        await this.removeExisting(p);
        await link(tp, p);
        return;
      }
      case 'symlink':
        await this.removeExisting(p);
        await symlink(e.linkname, p);
        await this.metadata(p, e, false);
        return;
      case 'char':
      case 'block':
      case 'fifo': {
        await this.removeExisting(p);
        const type = e.type === 'char' ? S_IFCHR : e.type === 'block' ? S_IFBLK : S_IFIFO;
        mknod(p, type | (e.mode & 0o777), e.devmajor, e.devminor);
        await this.metadata(p, e, false);
        return;
      }
    }
  }

  async finish(): Promise<void> {
    // Deepest last-written first: a directory's own entries are done by now, and setting a
    // child's times does not touch its parent's mtime.
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const [p, t] = this.dirTimes[i]!;
      await lutimes(p, t, t);
    }
  }

  private abs(comps: string[]): string {
    return comps.length === 0 ? this.root : join(this.root, ...comps);
  }

  /** Makes sure every component of `comps` is a real directory, creating missing ones (unless told not to). */
  private async parents(comps: string[], entry: string, create = true): Promise<void> {
    for (let i = 1; i <= comps.length; i++) {
      const rel = comps.slice(0, i).join('/');
      if (this.dirs.has(rel)) continue;
      const p = join(this.root, rel);
      const st = await lstat(p).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (st === undefined) {
        if (!create) throw new InvalidArgumentError(`layer entry "${entry}": "${rel}" does not exist`);
        await mkdir(p, 0o755);
      } else if (st.isSymbolicLink()) {
        throw new InvalidArgumentError(`layer entry "${entry}": parent "${rel}" is a symlink; refusing to write through it`);
      } else if (!st.isDirectory()) {
        throw new InvalidArgumentError(`layer entry "${entry}": parent "${rel}" is not a directory`);
      }
      this.dirs.add(rel);
    }
  }

  private async removeExisting(p: string): Promise<void> {
    const st = await lstat(p).catch(() => undefined);
    if (st === undefined) return;
    if (st.isDirectory()) {
      await rm(p, { recursive: true, force: true });
      this.dirs.clear(); // the cache may name directories that were inside
      this.dirs.add('');
    } else {
      await unlink(p);
    }
  }

  private async metadata(p: string, e: TarEntry, isDir: boolean): Promise<void> {
    // chown first: it clears setuid/setgid bits and security.capability (fs/attr.c, commoncap).
    lchown(p, e.uid, e.gid);
    if (e.type !== 'symlink') await chmod(p, e.mode & 0o7777);
    for (const [name, value] of e.xattrs) {
      if (isHostOnlyXattr(name)) continue; // a layer must not forge overlayfs state
      setXattr(p, name, value);
    }
    if (isDir) this.dirTimes.push([p, e.mtime]);
    else await lutimes(p, e.mtime, e.mtime);
  }
}

/** Path components of a tar name or link target, relative to the target directory. */
function clean(name: string, entry: string): string[] {
  const comps = name.split('/').filter((c) => c !== '' && c !== '.');
  if (comps.includes('..')) throw new InvalidArgumentError(`layer entry "${entry}": path "${name}" has a '..' component`);
  return comps;
}
