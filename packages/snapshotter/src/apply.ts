import { closeSync, constants, fchmodSync, fchownSync, linkSync, lstatSync, mkdirSync, openSync, rmSync, symlinkSync, unlinkSync, writeSync, chmodSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { inUserNamespace, lchown, lutimens, mknod, openRoot, resolvePathInRoot, S_IFBLK, S_IFCHR, S_IFIFO, setXattr, type Timespec } from '@tsbuild/linux';
import { FailedPreconditionError, InvalidArgumentError, type Digest, crypto } from '@tsbuild/oci';
import { decompressed } from './decompress.js';
import type { TarHeader } from './tar-format.js';
import { TarParser, type TarSink } from './tar-parser.js';
import { isHostOnlyXattr, OPAQUE_MARKER, opaqueXattr, USER_OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX } from './whiteout.js';

export interface ApplyOptions {
  /**
   * Apply as an ordinary user would: default `process.getuid() !== 0`. Then, like GNU tar run by
   * a user and like rootless image tools without a user namespace:
   * - ownership is not restored: every file belongs to the caller (chown to other ids needs
   *   CAP_CHOWN); permission bits are still set (the kernel drops setgid for a group the caller
   *   is not in);
   * - xattrs the kernel refuses (trusted.*, security.* need CAP_SYS_ADMIN / CAP_SETFCAP) are
   *   left out; user.* ones are kept;
   * - an opaque directory is marked with `user.overlay.opaque` instead of `trusted.overlay.opaque`
   *   (overlayfs reads the user.overlay.* namespace when mounted with `userxattr`, the option
   *   for mounts made in a user namespace);
   * - a character or block device entry fails the apply (InvalidArgumentError naming the entry)
   *   before anything is created for it: mknod(2) of a device needs CAP_MKNOD. Whiteouts still
   *   work: overlayfs whiteouts (char 0/0) may be created without it since Linux 5.8.
   */
  unprivileged?: boolean;
  /**
   * Whose rules the tar follows. 'layer' (the default): an image layer, as described at `apply`.
   * 'archive': a tar that ADD unpacks into its destination, with docker's rules. BuildKit's file
   * op (solver/llbsolver/file/unpack.go) hands the tar to go-archive's chrootarchive.Untar, which
   * runs archive.Unpack chrooted to the destination, so every path is resolved by the kernel as
   * if the destination were `/`: our one in-root rule (inRootWalk in @tsbuild/oci, walked by
   * resolvePathInRoot in @tsbuild/linux). Hence, unlike a layer:
   * - a name is cleaned lexically first (filepath.Clean): `..` stops at the destination root, so
   *   `../x` and `a/../../x` land at `x` (in the chroot, Join("/", "../x") is "/x", and
   *   Unpack's breakoutError check never fires);
   * - an entry naming the root itself (``, `.`, `./`) is skipped, whatever its type, and the
   *   destination keeps its own owner and mode (Unpack: `if fi.IsDir() && hdr.Name == "." { continue }`);
   * - a symlink on the way, one the archive made itself included, is followed inside the
   *   destination: an absolute target starts again at the destination root, a relative one's
   *   `..` stops there (the chroot). A link never leads out, so there is nothing to refuse:
   *   createTarFile's breakoutError checks (HasPrefix of "/") cannot fail inside the chroot;
   * - a hardlink target is resolved the same way (link(2) in the chroot follows symlinks in the
   *   target's directories, not in its last component);
   * - `.wh.*` entries are ordinary files: Untar uses no whiteout converter (the default
   *   AUFSWhiteoutFormat has none), so an archive cannot delete or hide anything.
   * What stays as for layers: an existing entry is replaced (RemoveAll) unless both are
   * directories, which merge; later entries win; owners, modes, xattrs and times are restored.
   */
  rules?: 'layer' | 'archive';
}

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
 *   rejected, so writes never follow links (a final-component symlink is replaced, not followed:
 *   files are created with O_CREAT|O_EXCL|O_NOFOLLOW);
 * - a hardlink must point at an existing non-directory inside dir, reached the same way.
 * (A tar that ADD unpacks follows docker's rules instead: see ApplyOptions.rules.)
 * Ownership, mode (after chown, which clears setuid/setgid and security.capability), xattrs,
 * and mtime/atime with nanoseconds (pax records) are restored; directory times last, as
 * creating children changes them. A pax-less entry gets atime = mtime.
 *
 * Speed: the tar is parsed by a push parser and every file operation is a sync call, so one
 * decompressed chunk (many small files) costs one event-loop turn rather than several awaited
 * thread-pool round trips per file; decompression and hashing overlap on the libuv pool.
 */
export async function apply(layer: Readable, dir: string, opts: ApplyOptions = {}): Promise<{ diffID: Digest }> {
  const root = resolve(dir);
  const rootStat = await lstat(root);
  if (!rootStat.isDirectory()) throw new InvalidArgumentError(`cannot apply a layer into ${root}: not a directory`);
  const unprivileged = opts.unprivileged ?? process.getuid?.() !== 0;
  const hash = crypto().createHash('sha256');
  const w = new TreeWriter(root, unprivileged, inUserNamespace(), opts.rules === 'archive');
  const parser = new TarParser(w);
  try {
    for await (const c of decompressed(layer)) {
      hash.update(c);
      parser.push(c);
    }
    parser.finish();
    w.finish();
  } finally {
    w.close();
  }
  return { diffID: `sha256:${hash.digest('hex')}` };
}

const O_CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

class TreeWriter implements TarSink {
  /** Relative paths known to be real directories (not symlinks) under root. */
  private readonly dirs = new Set<string>(['']);
  private readonly dirTimes: [string, TarHeader][] = [];
  /** The file whose body is being written. */
  private file: { fd: number; path: string; h: TarHeader } | undefined;

  /** Archive rules only: an O_PATH descriptor of the root, for in-root lookups. */
  private readonly rootFd: number | undefined;
  /** How errors name an entry. */
  private readonly what: string;

  constructor(
    private readonly root: string,
    private readonly unprivileged: boolean,
    /** In a user namespace (rootless): root there, yet trusted.* and device nodes are refused. */
    private readonly userns: boolean,
    private readonly archive: boolean,
  ) {
    this.rootFd = archive ? openRoot(root) : undefined;
    this.what = archive ? 'archive entry' : 'layer entry';
  }

  entry(h: TarHeader): void {
    if (this.archive) {
      const comps = cleanInRoot(h.name);
      if (comps.length === 0) return; // the destination itself: see ApplyOptions.rules
      if (this.skipDevice(h)) return;
      const p = this.abs(this.inRoot(comps, h.name));
      this.write(h, p, () => this.abs(this.inRoot(cleanInRoot(h.linkname), h.name, `hardlink target "${h.linkname}": `)));
      return;
    }
    const comps = clean(h.name, h.name);
    const base = comps.at(-1);
    const parent = comps.slice(0, -1);
    if (base !== undefined && base.startsWith(WHITEOUT_PREFIX)) {
      this.parents(parent, h.name);
      if (base === OPAQUE_MARKER) {
        // overlayfs: an opaque directory hides everything below it in lower layers.
        setXattr(this.abs(parent), this.unprivileged ? USER_OVERLAY_OPAQUE_XATTR : opaqueXattr(), 'y');
        return;
      }
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') throw new InvalidArgumentError(`layer entry "${h.name}": whiteout of "${victim}" is not allowed`);
      // overlayfs: a character device 0/0 is a whiteout.
      const p = this.abs([...parent, victim]);
      this.create(p, () => mknod(p, S_IFCHR, 0, 0));
      return;
    }
    if (comps.length === 0) {
      if (h.type !== 'dir') throw new InvalidArgumentError(`layer entry "${h.name}": the root can only be a directory`);
      this.metadata(this.root, h);
      return;
    }
    if (this.skipDevice(h)) return;
    this.parents(parent, h.name);
    this.write(h, this.abs(comps), () => {
      const target = clean(h.linkname, h.name);
      this.parents(target.slice(0, -1), h.name, `hardlink target "${h.linkname}": `);
      return this.abs(target);
    });
  }

  /**
   * A device entry where mknod(2) is refused. In a user namespace it is left out, as moby's
   * archive.createTarFile and containers-storage do there ("can't create device while running in
   * user namespace"): rootless builders never have device nodes in their trees. Without a user
   * namespace, an unprivileged apply fails on it instead.
   */
  private skipDevice(h: TarHeader): boolean {
    if (h.type !== 'char' && h.type !== 'block') return false;
    if (this.userns && !this.unprivileged) return true;
    if (this.unprivileged) {
      throw new InvalidArgumentError(`${this.what} "${h.name}": cannot create a ${h.type === 'char' ? 'character' : 'block'} device in an unprivileged apply`);
    }
    return false;
  }

  /**
   * Archive rules: `comps` (already clean) with every directory on the way resolved inside the
   * root, the last component kept as it is (it is replaced, never written through); the
   * directories on the way exist afterwards (created 0755 when missing, as go-archive's
   * createImpliedDirectories does, or, with `mustExist` (what to call them in the error), required).
   */
  private inRoot(comps: string[], entry: string, mustExist?: string): string[] {
    if (comps.length === 0) return comps;
    const parent = comps.slice(0, -1);
    let resolved = parent;
    // A chain of real directories seen on the way needs no lookup (the cache forgets everything
    // when a directory is replaced, so nothing in it has become a link since).
    if (!this.dirs.has(parent.join('/'))) {
      try {
        resolved = resolvePathInRoot(this.rootFd!, parent.join('/'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new InvalidArgumentError(`${this.what} "${entry}": too many levels of symbolic links in "${parent.join('/')}"`);
        throw e;
      }
    }
    this.parents(resolved, entry, mustExist);
    return [...resolved, comps.at(-1)!];
  }

  /** Creates the entry `h` at `p`; `linkTarget()` gives a hardlink's target path (its directories checked). */
  private write(h: TarHeader, p: string, linkTarget: () => string): void {
    switch (h.type) {
      case 'dir': {
        try {
          mkdirSync(p, 0o700);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          // An existing directory is merged into; anything else in the way is replaced.
          if (!lstatSync(p).isDirectory()) {
            this.removeExisting(p);
            mkdirSync(p, 0o700);
          }
        }
        this.dirs.add(relative(this.root, p));
        this.metadata(p, h);
        return;
      }
      case 'file': {
        const fd = this.create(p, () => openSync(p, O_CREATE_NEW, 0o600));
        this.file = { fd, path: p, h };
        return;
      }
      case 'link': {
        const tp = linkTarget();
        // A layer's empty target names nothing; an archive's names the root, as link(2) in docker's chroot sees it.
        const st = tp === this.root && !this.archive ? undefined : lstatSync(tp, { throwIfNoEntry: false });
        if (st === undefined) throw new InvalidArgumentError(`${this.what} "${h.name}": hardlink target "${h.linkname}" does not exist in the ${this.archive ? 'archive' : 'layer'}`);
        if (st.isDirectory()) throw new InvalidArgumentError(`${this.what} "${h.name}": hardlink target "${h.linkname}" is a directory`);
        if (tp === p) return;
        // link(2) does not follow a symlink at the target: the link names the symlink itself.
        this.create(p, () => linkSync(tp, p));
        return;
      }
      case 'symlink':
        this.create(p, () => symlinkSync(h.linkname, p));
        this.metadata(p, h);
        return;
      case 'char':
      case 'block':
      case 'fifo': {
        const type = h.type === 'char' ? S_IFCHR : h.type === 'block' ? S_IFBLK : S_IFIFO;
        this.create(p, () => mknod(p, type | (h.mode & 0o777), h.devmajor, h.devminor));
        this.metadata(p, h);
        return;
      }
    }
  }

  data(chunk: Buffer): void {
    if (this.file === undefined) return; // the body of an entry archive rules skip (one naming the root)
    const fd = this.file.fd;
    for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off, chunk.length - off);
  }

  end(): void {
    const f = this.file;
    if (f === undefined) return;
    this.file = undefined;
    try {
      // chown first: it clears setuid/setgid bits and security.capability (fs/attr.c, commoncap).
      if (!this.unprivileged) this.chown(f.h, () => fchownSync(f.fd, f.h.uid, f.h.gid));
      fchmodSync(f.fd, f.h.mode & 0o7777);
    } finally {
      closeSync(f.fd);
    }
    this.xattrs(f.path, f.h);
    lutimens(f.path, mtimeOf(f.h), f.h.atime ?? mtimeOf(f.h));
  }

  finish(): void {
    // Deepest last-written first: a directory's own entries are done by now, and setting a
    // child's times does not touch its parent's mtime.
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const [p, h] = this.dirTimes[i]!;
      lutimens(p, mtimeOf(h), h.atime ?? mtimeOf(h));
    }
  }

  /** Closes a file left open by a failed apply. */
  close(): void {
    if (this.file !== undefined) closeSync(this.file.fd);
    this.file = undefined;
    if (this.rootFd !== undefined) closeSync(this.rootFd);
  }

  private abs(comps: string[]): string {
    return comps.length === 0 ? this.root : join(this.root, ...comps);
  }

  /** Runs make(); when something is in the way (EEXIST), removes it and runs make() again. */
  private create<T>(p: string, make: () => T): T {
    try {
      return make();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    this.removeExisting(p);
    return make();
  }

  /**
   * Makes sure every component of `comps` is a real directory, creating missing ones; with
   * `mustExist` (what to call them in the error, say a hardlink target) a missing one is an error.
   */
  private parents(comps: string[], entry: string, mustExist?: string): void {
    let rel = '';
    for (const c of comps) {
      rel = rel === '' ? c : `${rel}/${c}`;
      if (this.dirs.has(rel)) continue;
      const p = join(this.root, rel);
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (st === undefined) {
        if (mustExist !== undefined) throw new InvalidArgumentError(`${this.what} "${entry}": ${mustExist}"${rel}" does not exist`);
        mkdirSync(p, 0o755);
      } else if (st.isSymbolicLink()) {
        throw new InvalidArgumentError(`${this.what} "${entry}": parent "${rel}" is a symlink; refusing to write through it`);
      } else if (!st.isDirectory()) {
        throw new InvalidArgumentError(`${this.what} "${entry}": parent "${rel}" is not a directory`);
      }
      this.dirs.add(rel);
    }
  }

  private removeExisting(p: string): void {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined) return;
    if (st.isDirectory()) {
      rmSync(p, { recursive: true, force: true });
      this.dirs.clear(); // the cache may name directories that were inside
      this.dirs.add('');
    } else {
      unlinkSync(p);
    }
  }

  /**
   * Runs the chown of entry `h`. In a user namespace an owner the namespace does not map is
   * EINVAL (chown(2): the kernel cannot turn it into a kuid); rootless, the mapped ids are the
   * user's subordinate range, so a layer with an owner beyond it (a range smaller than 65536) is
   * said as what it is, as containers-storage says "potentially insufficient UIDs or GIDs".
   */
  private chown(h: TarHeader, op: () => void): void {
    try {
      op();
    } catch (e) {
      if (!this.userns || (e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
      throw new FailedPreconditionError(
        `${this.what} "${h.name}": its owner ${h.uid}:${h.gid} is not mapped in this user namespace (rootless, the ids above 0 are the user's range in /etc/subuid and /etc/subgid: give it a larger one, e.g. 65536 ids)`,
      );
    }
  }

  /** Owner, mode and xattrs of a non-file entry; times too, or later for a directory. */
  private metadata(p: string, h: TarHeader): void {
    // chown first: it clears setuid/setgid bits and security.capability (fs/attr.c, commoncap).
    if (!this.unprivileged) this.chown(h, () => lchown(p, h.uid, h.gid));
    if (h.type !== 'symlink') chmodSync(p, h.mode & 0o7777);
    this.xattrs(p, h);
    if (h.type === 'dir') this.dirTimes.push([p, h]);
    else lutimens(p, mtimeOf(h), h.atime ?? mtimeOf(h));
  }

  private xattrs(p: string, h: TarHeader): void {
    for (const [name, value] of h.xattrs) {
      if (isHostOnlyXattr(name)) continue; // a layer must not forge overlayfs state
      try {
        setXattr(p, name, value);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Unprivileged: trusted.* and security.* are the kernel's to refuse (see ApplyOptions).
        if ((this.unprivileged || this.userns) && (code === 'EPERM' || code === 'EACCES' || code === 'ENOTSUP')) continue;
        throw e;
      }
    }
  }
}

function mtimeOf(h: TarHeader): Timespec {
  return { sec: h.mtime, nsec: h.mtimeNsec ?? 0 };
}

/** Path components of a tar name or link target, relative to the target directory. */
function clean(name: string, entry: string): string[] {
  const comps = name.split('/').filter((c) => c !== '' && c !== '.');
  if (comps.includes('..')) throw new InvalidArgumentError(`layer entry "${entry}": path "${name}" has a '..' component`);
  return comps;
}

/**
 * Archive rules: the components of a tar name or hardlink target as go-archive's Unpack sees
 * them in its chroot, filepath.Clean of it joined to "/": empty and `.` components dropped, `..`
 * stopping at the root.
 */
function cleanInRoot(name: string): string[] {
  const comps: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') comps.pop();
    else comps.push(c);
  }
  return comps;
}
