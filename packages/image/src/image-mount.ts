import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError, digestHex } from '@tsbuild/oci';
import { MNT_DETACH, mountPoints, umount } from '@tsbuild/linux';
import { MOUNT_IMAGE_LABEL, MOUNT_LABEL, mountSnapshot, unpack, type OverlaySnapshotter } from '@tsbuild/snapshotter';
import type { Image, Store } from '@tsbuild/store';

export interface ImageMount {
  /** The view snapshot's key. */
  key: string;
  /** Where the flattened filesystem is mounted (<store>/mounts/<image ID hex>). */
  path: string;
  imageId: string;
  /** False when the record exists but nothing is mounted there (after a reboot, say). */
  mounted: boolean;
}

function viewKey(imageIdHex: string): string {
  return `mount-${imageIdHex}`;
}

/**
 * Mounts a read-only view of the image's flattened filesystem at <store>/mounts/<image ID>, as
 * `buildah mount` does: the layers are unpacked into committed snapshots (shared with builds),
 * a view snapshot records the mount, and its mounts are made in this process's mount namespace,
 * so they outlive the command until `unmountImage`. Mounting an image already mounted returns
 * the existing mount.
 */
export async function mountImage(store: Store, s: OverlaySnapshotter, image: Image): Promise<ImageMount> {
  return store.withLock('shared', async () => {
    const imageId = (await image.configDescriptor()).digest;
    const hex = digestHex(imageId);
    const key = viewKey(hex);
    const target = path.join(store.root, 'mounts', hex);
    if (await s.exists(key)) {
      if (mountPoints().has(target)) return { key, path: target, imageId, mounted: true };
      await s.remove(key);
    }
    const layers = await image.layers();
    const top = await unpack(s, layers.map((l) => ({ diffID: l.diffID, open: () => l.uncompressed() })));
    const mounts = await s.view(key, top, { labels: { [MOUNT_LABEL]: target, [MOUNT_IMAGE_LABEL]: imageId } });
    try {
      await mkdir(target, { recursive: true, mode: 0o700 });
      for (const m of mounts) mountSnapshot(m, target, { readOnly: true, what: 'image' });
    } catch (e) {
      await s.remove(key).catch(() => undefined);
      await rmdir(target).catch(() => undefined);
      throw e;
    }
    return { key, path: target, imageId, mounted: true };
  });
}

/** Every recorded `tsbuild mount`, with whether it is mounted now. */
export async function listMounts(s: OverlaySnapshotter): Promise<ImageMount[]> {
  const points = mountPoints();
  const out: ImageMount[] = [];
  await s.walk((i) => {
    const target = i.labels[MOUNT_LABEL];
    if (i.kind !== 'view' || target === undefined) return;
    out.push({ key: i.name, path: target, imageId: i.labels[MOUNT_IMAGE_LABEL] ?? '', mounted: points.has(target) });
  });
  return out;
}

/**
 * Undoes `mountImage`: unmounts, removes the view snapshot and the mount point. NotFoundError
 * when the image is not mounted.
 */
export async function unmountImage(store: Store, s: OverlaySnapshotter, image: Image): Promise<ImageMount> {
  const imageId = (await image.configDescriptor()).digest;
  const found = (await listMounts(s)).find((m) => m.key === viewKey(digestHex(imageId)));
  if (found === undefined) throw new NotFoundError(`image ${digestHex(imageId).slice(0, 12)} is not mounted (no mount under ${path.join(store.root, 'mounts')})`);
  await releaseMount(s, found);
  return { ...found, mounted: false };
}

/** Unmounts and forgets one recorded mount; `prune` can call this for every entry of `listMounts`. */
export async function releaseMount(s: OverlaySnapshotter, m: ImageMount): Promise<void> {
  // MNT_DETACH: a shell sitting in the mount point must not make umount fail; the kernel
  // finishes the unmount when the last user leaves.
  if (m.mounted) umount(m.path, MNT_DETACH);
  await s.remove(m.key);
  await rmdir(m.path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}
