import { MS, inUserNamespace, mount, mountOverlay } from '@tsbuild/linux';

/**
 * One mount, in the snapshotter's shape (containerd's mount.Mount without a target): the rootfs of
 * a container is a list of these, mounted in order at one directory. Examples:
 *   { type: 'overlay', source: 'overlay', options: ['index=off', 'lowerdir=/a:/b', 'upperdir=/u', 'workdir=/w'] }
 *   { type: 'bind', source: '/some/dir', options: ['rbind', 'ro'] }
 */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

/** Options that are mount(2) flags rather than filesystem data (mount(8)'s table). */
const FLAG_OPTIONS: Record<string, { set: number } | { clear: number }> = {
  ro: { set: MS.RDONLY },
  rw: { clear: MS.RDONLY },
  nosuid: { set: MS.NOSUID },
  suid: { clear: MS.NOSUID },
  nodev: { set: MS.NODEV },
  dev: { clear: MS.NODEV },
  noexec: { set: MS.NOEXEC },
  exec: { clear: MS.NOEXEC },
  sync: { set: 0x10 },
  async: { clear: 0x10 },
  dirsync: { set: 0x80 },
  noatime: { set: MS.NOATIME },
  atime: { clear: MS.NOATIME },
  nodiratime: { set: 0x800 },
  diratime: { clear: 0x800 },
  relatime: { set: 1 << 21 },
  norelatime: { clear: 1 << 21 },
  strictatime: { set: MS.STRICTATIME },
  bind: { set: MS.BIND },
  rbind: { set: MS.BIND | MS.REC },
  defaults: { set: 0 },
};

export interface MountCall {
  flags: number;
  data: string;
}

/** Splits a Mount's options into mount(2) flags and the comma-joined data string. */
export function mountCall(m: Mount): MountCall {
  let flags = 0;
  const data: string[] = [];
  for (const o of m.options) {
    const f = FLAG_OPTIONS[o];
    if (f === undefined) data.push(o);
    else if ('set' in f) flags |= f.set;
    else flags &= ~f.clear;
  }
  if (m.type === 'bind') flags |= MS.BIND;
  return { flags, data: data.join(',') };
}

/**
 * Mounts every entry at `target` in order (containerd's mount.All). A read-only bind needs a second
 * call: the kernel ignores MS_RDONLY on the MS_BIND call itself (mount(2), "Creating a bind mount").
 */
export function mountAll(mounts: Mount[], target: string): void {
  for (const m of mounts) {
    try {
      mountOne(m, target);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      // overlayfs explains EINVAL and friends only in the kernel log; name what we asked for.
      const rootless =
        m.type === 'overlay' && inUserNamespace()
          ? ' (rootless: the kernel refused overlayfs in this user namespace; it needs Linux 5.11 or later and a store on a filesystem with user.* xattrs, e.g. ext4, xfs, btrfs, tmpfs since 6.6: put the store there with --root)'
          : '';
      throw new Error(`mount ${m.type} ${m.source} at ${target} (${m.options.join(',').slice(0, 300)}): ${code}${rootless}`, { cause: e });
    }
  }
}

function mountOne(m: Mount, target: string): void {
  const { flags, data } = mountCall(m);
  if (flags & MS.BIND) {
    mount(m.source, target, null, flags & (MS.BIND | MS.REC));
    if (flags & ~(MS.BIND | MS.REC)) mount(null, target, null, MS.REMOUNT | MS.BIND | (flags & ~(MS.BIND | MS.REC)));
    return;
  }
  if (m.type === 'overlay') mountOverlay(m.source, target, flags, data);
  else mount(m.source, target, m.type, flags, data.length > 0 ? data : null);
}
