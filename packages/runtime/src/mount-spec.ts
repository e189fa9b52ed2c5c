import { MS, mount } from '@tsbuild/linux';

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

/** mount(2) copies at most one page of data; overlay lowerdir lists of many layers exceed it. */
const MAX_MOUNT_DATA = 4095;

/**
 * Overlay data too long for one page is shortened the way containerd does it: the mounting process
 * chdir's to the longest directory common to every layer path and passes them relative to it
 * (overlayfs resolves relative paths against the mounting process's cwd). Returns the directory
 * to chdir to, or undefined when the data fits.
 */
export function shortenOverlayData(data: string): { cwd: string; data: string } | undefined {
  if (Buffer.byteLength(data) <= MAX_MOUNT_DATA) return undefined;
  const opts = data.split(',');
  const paths: string[] = [];
  for (const o of opts) {
    const [k, v] = splitOption(o);
    if (k === 'lowerdir') paths.push(...v.split(':'));
    else if (k === 'upperdir' || k === 'workdir') paths.push(v);
  }
  if (paths.length === 0) return undefined;
  let common = paths[0].split('/').slice(0, -1);
  for (const p of paths) {
    const parts = p.split('/').slice(0, -1);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const cwd = common.join('/');
  if (cwd === '' || cwd === '/') return undefined;
  const rel = (p: string): string => (p.startsWith(`${cwd}/`) ? p.slice(cwd.length + 1) : p);
  const out = opts.map((o) => {
    const [k, v] = splitOption(o);
    if (k === 'lowerdir') return `lowerdir=${v.split(':').map(rel).join(':')}`;
    if (k === 'upperdir' || k === 'workdir') return `${k}=${rel(v)}`;
    return o;
  });
  return { cwd, data: out.join(',') };
}

function splitOption(o: string): [string, string] {
  const i = o.indexOf('=');
  return i < 0 ? [o, ''] : [o.slice(0, i), o.slice(i + 1)];
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
      throw new Error(`mount ${m.type} ${m.source} at ${target} (${m.options.join(',').slice(0, 300)}): ${code}`, { cause: e });
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
  const short = m.type === 'overlay' ? shortenOverlayData(data) : undefined;
  if (short !== undefined) {
    const back = process.cwd();
    process.chdir(short.cwd);
    try {
      mount(m.source, target, m.type, flags, short.data);
    } finally {
      process.chdir(back);
    }
  } else {
    mount(m.source, target, m.type, flags, data.length > 0 ? data : null);
  }
}
