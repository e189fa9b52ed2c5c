import type { BigIntStats } from 'node:fs';
import { major, minor } from '@tsbuild/linux';

/**
 * Two ways of saying "deleted in this layer":
 * - overlayfs (Documentation/filesystems/overlayfs.rst): a whiteout is a character device with
 *   device number 0/0; an opaque directory carries xattr trusted.overlay.opaque = "y" and hides
 *   everything below it in lower layers;
 * - OCI image layers (image-spec layer.md): an empty file `.wh.<name>` deletes <name>; an entry
 *   `<dir>/.wh..wh..opq` makes <dir> opaque.
 * `diff` converts the first into the second, `apply` the second into the first.
 */
export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';
/** The same marker for overlay mounts made with `userxattr` (unprivileged, in a user namespace). */
export const USER_OVERLAY_OPAQUE_XATTR = 'user.overlay.opaque';

export function isOverlayWhiteout(st: BigIntStats): boolean {
  return st.isCharacterDevice() && major(st.rdev) === 0 && minor(st.rdev) === 0;
}

/** xattrs that describe overlayfs or host state, not the file: never copied into or out of layers (one rule with COPY's, in @tsbuild/linux). */
export { isHostOnlyXattr } from '@tsbuild/linux';
