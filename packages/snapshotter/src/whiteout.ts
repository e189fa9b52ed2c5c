import type { BigIntStats } from 'node:fs';
import { inUserNamespace, major, minor } from '@tsbuild/linux';

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

/**
 * The opaque marker this process writes: in a user namespace (rootless) trusted.* xattrs are
 * refused and overlay is mounted with `userxattr` (overlayMountOptions), so it reads the user.*
 * one. Readers accept both.
 */
export function opaqueXattr(): string {
  return inUserNamespace() ? USER_OVERLAY_OPAQUE_XATTR : OVERLAY_OPAQUE_XATTR;
}

/** Whether `name` is one of the two opaque markers. */
export function isOpaqueXattr(name: string): boolean {
  return name === OVERLAY_OPAQUE_XATTR || name === USER_OVERLAY_OPAQUE_XATTR;
}

/**
 * Options of every overlay mount of snapshots. No index, metacopy or redirects: a layer must be
 * readable as plain directories (diff, MergedView). In a user namespace overlay needs
 * `userxattr` for its state, and refuses `redirect_dir=off` with EINVAL there (measured on 6.18:
 * an unprivileged mount never follows redirects anyway).
 */
export function overlayMountOptions(): string[] {
  return inUserNamespace() ? ['userxattr', 'index=off', 'metacopy=off'] : ['index=off', 'metacopy=off', 'redirect_dir=off'];
}

export function isOverlayWhiteout(st: BigIntStats): boolean {
  return st.isCharacterDevice() && major(st.rdev) === 0 && minor(st.rdev) === 0;
}

/** xattrs that describe overlayfs or host state, not the file: never copied into or out of layers (one rule with COPY's, in @tsbuild/linux). */
export { isHostOnlyXattr } from '@tsbuild/linux';
