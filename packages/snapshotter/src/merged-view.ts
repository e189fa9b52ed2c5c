import { type Stats, promises as fsp } from 'node:fs';
import path from 'node:path';
import { NotFoundError, SymlinkLoopError, globPaths, resolveInRoot } from '@tsbuild/oci';
import { copyXattrs, getXattr } from '@tsbuild/linux';
import type { OverlaySnapshotter } from './overlay-snapshotter.js';
import { OVERLAY_OPAQUE_XATTR, USER_OVERLAY_OPAQUE_XATTR } from './whiteout.js';

/**
 * The filesystem of a committed snapshot chain, read without mounting it: what overlayfs would
 * show, computed from the layers' directories (the nearest layer wins; a char device 0/0 is a
 * whiteout; a directory with trusted.overlay.opaque=y (user.overlay.opaque=y when made rootless) hides the layers below it; a non-directory
 * hides everything below it). Used by COPY --from, whose sources live in another stage or image.
 * Symlinks resolve inside the view, never on the host.
 */
export class MergedView {
  private constructor(private readonly layers: string[]) {}

  /**
   * `name` is a committed snapshot (a chainID), or undefined for an empty filesystem. With `upper`,
   * that directory (an active snapshot's upperdir) is the topmost layer, read live as it changes.
   */
  static async open(s: OverlaySnapshotter, name: string | undefined, upper?: string): Promise<MergedView> {
    const layers: string[] = upper !== undefined ? [upper] : [];
    for (let n = name; n !== undefined; n = (await s.stat(n)).parent) layers.push(await s.fsDir(n));
    return new MergedView(layers);
  }

  /**
   * The entry at `rel` (components already free of symlinks), or undefined. For a directory,
   * `dirs` lists the layer directories that contribute to its listing, nearest first.
   */
  private async lookup(rel: string[]): Promise<{ stat: Stats; abs: string; dirs: string[] } | undefined> {
    let contributing = this.layers.map((l) => l);
    let found: { stat: Stats; abs: string; dirs: string[] } | undefined = { stat: await fsp.lstat(this.layers[0] ?? '/'), abs: this.layers[0] ?? '/', dirs: contributing };
    if (this.layers.length === 0) return rel.length === 0 ? found : undefined;
    for (const name of rel) {
      const dirs: string[] = [];
      found = undefined;
      for (const base of contributing) {
        const abs = path.join(base, name);
        const st = await fsp.lstat(abs).catch(() => undefined);
        if (!st) continue;
        if (st.isCharacterDevice() && st.rdev === 0) break; // whiteout: nothing below
        if (!st.isDirectory()) {
          if (dirs.length === 0) found = { stat: st, abs, dirs: [] };
          break;
        }
        if (dirs.length === 0) found = { stat: st, abs, dirs };
        dirs.push(abs);
        if (getXattr(abs, OVERLAY_OPAQUE_XATTR)?.toString() === 'y' || getXattr(abs, USER_OVERLAY_OPAQUE_XATTR)?.toString() === 'y') break;
      }
      if (!found) return undefined;
      contributing = dirs;
    }
    return found;
  }

  /** Resolves symlinks inside the view (the one in-root rule): absolute targets start again at the view's root. */
  async resolve(p: string, followFinal = false): Promise<string[]> {
    try {
      return await resolveInRoot(
        p,
        async (at) => {
          const e = await this.lookup(at);
          return e?.stat.isSymbolicLink() ? fsp.readlink(e.abs) : undefined;
        },
        { followFinal },
      );
    } catch (e) {
      if (e instanceof SymlinkLoopError) throw new NotFoundError(e.message);
      throw e;
    }
  }

  /** The entry at already resolved components (from `resolve`): its lstat and the layer path it is read from. */
  async entry(rel: string[]): Promise<{ stat: Stats; abs: string } | undefined> {
    return this.lookup(rel);
  }

  /** lstat of the entry at already resolved components, or undefined. */
  async lstatResolved(rel: string[]): Promise<Stats | undefined> {
    return (await this.lookup(rel))?.stat;
  }

  /** lstat of `p` in the view (stat with `followFinal`), or undefined. */
  async stat(p: string, followFinal = false): Promise<Stats | undefined> {
    return (await this.lookup(await this.resolve(p, followFinal)))?.stat;
  }

  /** Names in a directory of the view, sorted; undefined if it is not a directory. */
  async readdir(p: string): Promise<string[] | undefined> {
    const rel = await this.resolve(p, true);
    const e = await this.lookup(rel);
    if (!e?.stat.isDirectory()) return undefined;
    const names = new Set<string>();
    for (const d of e.dirs) for (const n of await fsp.readdir(d)) names.add(n);
    const out: string[] = [];
    for (const n of [...names].sort()) if (await this.lookup([...rel, n])) out.push(n);
    return out;
  }

  /**
   * Copies `p` (a file, symlink or whole directory) out of the view to the host path `dest`:
   * files as hard links to the layer's file (same content, mode and owner), directories made
   * with the top layer's mode, owner and mtime. With `followFinal` a symlink at `p` is followed
   * inside the view and its target copied (a bind mount's source must never be a link, which
   * the kernel would follow on the host).
   */
  async materialize(p: string, dest: string, followFinal = false): Promise<void> {
    const rel = await this.resolve(p, followFinal);
    const e = await this.lookup(rel);
    if (!e) throw new NotFoundError(`${p}: no such file or directory`);
    await this.copyOut(rel, e, dest);
  }

  private async copyOut(rel: string[], e: { stat: Stats; abs: string }, dest: string): Promise<void> {
    const st = e.stat;
    if (st.isDirectory()) {
      await fsp.mkdir(dest, { recursive: true });
      for (const n of (await this.readdir(`/${rel.join('/')}`)) ?? []) {
        const child = await this.lookup([...rel, n]);
        if (child) await this.copyOut([...rel, n], child, path.join(dest, n));
      }
      await fsp.chmod(dest, st.mode & 0o7777);
      await fsp.lchown(dest, st.uid, st.gid);
      copyXattrs(e.abs, dest); // the top layer's, as overlayfs shows them (its own opaque marker left out)
      await fsp.utimes(dest, st.atime, st.mtime);
    } else if (st.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(e.abs), dest);
      await fsp.lchown(dest, st.uid, st.gid);
      copyXattrs(e.abs, dest);
      await fsp.lutimes(dest, st.atime, st.mtime);
    } else if (st.isFile()) {
      // A hard link shares the layer file's owner, xattrs and times; a copy (across filesystems) must be given them.
      await fsp.link(e.abs, dest).catch(async () => {
        await fsp.cp(e.abs, dest, { preserveTimestamps: true });
        await fsp.lchown(dest, st.uid, st.gid);
        await fsp.chmod(dest, st.mode & 0o7777);
        copyXattrs(e.abs, dest);
      });
    }
    // fifos, sockets and devices are not copied, as COPY --from of them is not meaningful
  }

  /** Paths in the view matching a pattern with Go filepath.Match wildcards per segment. */
  glob(pattern: string): Promise<string[]> {
    return globPaths(pattern, { lstat: (p) => this.stat(p), list: (dir) => this.readdir(dir) });
  }
}
