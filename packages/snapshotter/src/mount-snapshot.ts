import { FailedPreconditionError } from '@tsbuild/oci';
import { MAX_MOUNT_DATA, MS, mount, mountOverlay, shortenOverlayData } from '@tsbuild/linux';
import type { Mount } from './snapshotter.js';

/**
 * Makes one of a snapshot's mounts (Snapshotter.mounts/view) at `target` in this process's mount
 * namespace: `tsbuild mount` of an image (read-only) or a working container (read-write), and a
 * container's merged view for `commit --squash`. `what` names the filesystem in errors.
 */
export function mountSnapshot(m: Mount, target: string, opts: { readOnly: boolean; what: string }): void {
  if (m.type === 'bind') {
    mount(m.source, target, null, MS.BIND | MS.REC);
    // A bind mount ignores MS_RDONLY on creation; it takes a second, remounting call (mount(2)).
    if (opts.readOnly) mount(null, target, null, MS.REMOUNT | MS.BIND | MS.RDONLY);
    return;
  }
  const data = m.options.join(',');
  const short = shortenOverlayData(data);
  if (short !== undefined && Buffer.byteLength(short.data) > MAX_MOUNT_DATA) {
    const lowers = m.options.find((o) => o.startsWith('lowerdir='))?.split(':').length ?? 0;
    throw new FailedPreconditionError(`${opts.what} at ${target} has too many layers (${lowers}) for one overlay mount`);
  }
  // An overlay of lowerdirs only has no upper layer and is read-only by construction; MS_RDONLY says so to the VFS too.
  mountOverlay(m.source, target, opts.readOnly ? MS.RDONLY : 0, data);
}
