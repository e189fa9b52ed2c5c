/**
 * Label on the view snapshot behind a `tsbuild mount`: its value is the mount point. The label
 * is the record of the mount: `umount` and `prune` find mounts by walking views that carry it,
 * and prune keeps every snapshot that carries it.
 */
export const MOUNT_LABEL = 'tsbuild.mount.target';
/** Label with the mounted image's ID (config digest). */
export const MOUNT_IMAGE_LABEL = 'tsbuild.mount.image';
