import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { copyXattrs } from '@tsbuild/linux';

/**
 * Re-creates the tree at `src` under `dst` from hard links (copies across filesystems), keeping
 * directories' modes, owners and mtimes and symlinks as symlinks; entries for which `skip(rel)`
 * is true are left out (a skipped directory's contents too). COPY --exclude and --parents stage
 * their sources this way, so the copy itself stays one plain copy of what is staged.
 */
export async function stageTree(src: string, dst: string, skip: (rel: string) => boolean = () => false, rel = ''): Promise<void> {
  const st = await fsp.lstat(src);
  if (st.isDirectory()) {
    await fsp.mkdir(dst, { recursive: true });
    for (const name of (await fsp.readdir(src)).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      if (skip(r)) continue;
      await stageTree(path.join(src, name), path.join(dst, name), skip, r);
    }
    await fsp.chmod(dst, st.mode & 0o7777);
    await fsp.lchown(dst, st.uid, st.gid);
    copyXattrs(src, dst);
    await fsp.utimes(dst, st.atime, st.mtime);
  } else if (st.isSymbolicLink()) {
    await fsp.symlink(await fsp.readlink(src), dst);
    await fsp.lchown(dst, st.uid, st.gid);
    copyXattrs(src, dst);
    await fsp.lutimes(dst, st.atime, st.mtime);
  } else {
    // A hard link shares the owner (COPY --from and ADD archives keep it) and xattrs; a copy must be given them.
    await fsp.link(src, dst).catch(async () => {
      await fsp.cp(src, dst, { preserveTimestamps: true });
      await fsp.lchown(dst, st.uid, st.gid);
      await fsp.chmod(dst, st.mode & 0o7777);
      copyXattrs(src, dst);
    });
  }
}

/** Makes each missing directory of `rel` under `root` with the mode, owner and mtime of its counterpart under `like` (0755 root when there is none). */
export async function makeParents(root: string, rel: string, like: string | undefined): Promise<void> {
  const parts = rel.split('/').filter((p) => p !== '');
  for (let i = 1; i < parts.length; i++) {
    const sub = parts.slice(0, i).join('/');
    const d = path.join(root, sub);
    if (await fsp.lstat(d).catch(() => undefined)) continue;
    await fsp.mkdir(d);
    const st = like !== undefined ? await fsp.stat(path.join(like, sub)).catch(() => undefined) : undefined;
    await fsp.chmod(d, st ? st.mode & 0o7777 : 0o755);
    if (st) {
      await fsp.lchown(d, st.uid, st.gid);
      await fsp.utimes(d, st.atime, st.mtime);
    }
  }
}
