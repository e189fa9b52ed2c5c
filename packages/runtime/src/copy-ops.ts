import { chmodSync, lchownSync, lstatSync, mkdirSync, readdirSync, rmSync, unlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { HardLinks, copyMetadata, copyNode, linksOf, lstatIfExists } from '@tsbuild/linux';
import type { CopyOp } from './helper-protocol.js';
import { HelperFailure } from './helper-failure.js';
import { hostPath, resolveInRoot } from './root-path.js';

/**
 * Docker's COPY and WORKDIR on a mounted rootfs at `root`, run by the helper inside its private mount
 * namespace. Destinations are resolved with the rootfs as `/` (resolveInRoot); below the resolved
 * destination every entry is created by us in a directory we created or lstat'ed, and an existing
 * symlink in the way is replaced, never followed, so nothing is written outside the rootfs.
 */
export function applyCopyOps(root: string, ops: CopyOp[]): void {
  for (const op of ops) {
    if (op.op === 'mkdir') {
      if (!op.path.startsWith('/')) throw new HelperFailure('INVALID_ARGUMENT', `mkdir: path must be absolute: ${op.path}`);
      const dir = resolveInRoot(root, op.path);
      mkdirInRoot(root, dir, { uid: op.uid, gid: op.gid, mode: op.mode });
    } else {
      copy(root, op);
    }
  }
}

interface Owner {
  uid: number;
  gid: number;
}

function copy(root: string, op: Extract<CopyOp, { op: 'copy' }>): void {
  if (!op.dest.startsWith('/')) throw new HelperFailure('INVALID_ARGUMENT', `COPY destination must be absolute: ${op.dest}`);
  if (op.sources.length === 0) throw new HelperFailure('INVALID_ARGUMENT', `COPY to ${op.dest}: no sources`);
  const sources = op.sources.map((src): [string, Stats] => {
    try {
      return [src, lstatSync(src)];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new HelperFailure('NOT_FOUND', `COPY source not found: ${src}`);
      throw e;
    }
  });
  const dest = resolveInRoot(root, op.dest);
  const destStat = lstatIfExists(hostPath(root, dest));
  const intoDir = op.dest.endsWith('/') || op.sources.length > 1 || destStat?.isDirectory() === true;
  const owner = { uid: op.uid, gid: op.gid };
  const groups = new Map<number, HardLinks>();
  for (const [i, [src, st]] of sources.entries()) {
    // Directories the copy creates on the way to dest get uid:gid; the copied entries keep theirs if asked.
    const entryOwner = op.keepOwners?.[i] === true ? undefined : owner;
    const links = linksOf(op, i, groups, () => new HardLinks());
    try {
      if (st.isDirectory()) {
        mkdirInRoot(root, dest, { ...owner, mode: op.mode ?? 0o755 });
        const destHost = hostPath(root, dest);
        for (const name of readdirSync(src)) copyEntry(posix.join(src, name), posix.join(destHost, name), entryOwner, op.mode, links);
      } else if (intoDir) {
        mkdirInRoot(root, dest, { ...owner, mode: 0o755 });
        copyEntry(src, posix.join(hostPath(root, dest), posix.basename(src)), entryOwner, op.mode, links, st);
      } else {
        mkdirInRoot(root, posix.dirname(dest), { ...owner, mode: 0o755 });
        copyEntry(src, hostPath(root, dest), entryOwner, op.mode, links, st);
      }
    } catch (e) {
      if (e instanceof HelperFailure) throw e;
      throw new HelperFailure('FAILED_PRECONDITION', `COPY ${src} to ${op.dest}: ${(e as Error).message.replaceAll(root, '')}`);
    }
  }
}

/**
 * mkdir -p inside the rootfs: each missing component is created owned by `owner`, the last one
 * with `mode` and its parents 0755 (Docker's WORKDIR and COPY). Existing directories are kept as
 * they are; a non-directory in the way is an error.
 */
function mkdirInRoot(root: string, dir: string, opts: Owner & { mode: number }): void {
  const parts = dir.split('/').filter((c) => c.length > 0);
  for (let i = 1; i <= parts.length; i++) {
    // Re-resolve each prefix: a component that exists may be a symlink to elsewhere in the rootfs.
    const inRoot = resolveInRoot(root, `/${parts.slice(0, i).join('/')}`);
    const host = hostPath(root, inRoot);
    const st = lstatIfExists(host);
    if (st?.isDirectory()) continue;
    if (st !== undefined) throw new HelperFailure('FAILED_PRECONDITION', `cannot create directory ${inRoot}: a file of that name exists in the rootfs`);
    const mode = i === parts.length ? opts.mode : 0o755;
    mkdirSync(host, { mode });
    lchownSync(host, opts.uid, opts.gid);
    chmodSync(host, mode); // mkdir(2) applies the umask
  }
}

/**
 * Copies one source entry (never following a symlink) to `dest`, owned by `owner` (by the source's
 * own owner when undefined), a path whose parent is a real
 * directory inside the rootfs. Directories merge into an existing directory; anything else
 * replaces what is there (Docker: "the only exception is when both are directories").
 */
function copyEntry(src: string, dest: string, owner: Owner | undefined, mode: number | undefined, links: HardLinks, st = lstatSync(src), fresh = false): void {
  // In a directory this copy just made nothing exists yet: no lookup (on overlayfs a miss is a
  // lookup in every layer below).
  const existing = fresh ? undefined : lstatIfExists(dest);
  const uid = owner?.uid ?? st.uid;
  const gid = owner?.gid ?? st.gid;
  if (st.isDirectory()) {
    if (existing !== undefined && !existing.isDirectory()) unlinkSync(dest);
    const made = existing === undefined || !existing.isDirectory();
    if (made) mkdirSync(dest, { mode: 0o700 });
    for (const name of readdirSync(src)) copyEntry(posix.join(src, name), posix.join(dest, name), owner, mode, links, undefined, made);
  } else {
    if (existing?.isDirectory()) rmSync(dest, { recursive: true, force: true });
    else if (existing !== undefined) unlinkSync(dest);
    if (st.isFile() && links.linked(st, dest)) return; // the inode has its owner, mode, xattrs and times already
    if (copyNode(src, dest, st, uid, gid, mode ?? st.mode & 0o7777) && st.isFile()) links.copied(st, dest);
    return;
  }
  copyMetadata(src, dest, st, uid, gid, mode ?? st.mode & 0o7777);
}

