import path from 'node:path';
import type { Digest, ImageConfig, ImageIndex } from '@tsbuild/oci';
import { chainIds, isIndexMediaType } from '@tsbuild/oci';
import { pruneCompressionRecords, type Store } from '@tsbuild/store';
import { MOUNT_LABEL, type OverlaySnapshotter, type SnapshotInfo } from '@tsbuild/snapshotter';
import { BuildCache } from './cache.js';
import { CONTAINER_LABEL, ContainerRecords } from '@tsbuild/container';
import { BuildRecords } from './build-records.js';
import { KEPT_LABEL, readKeptState, removeKeptState } from './debug-state.js';

export interface PruneOptions {
  /** Keep images that have no name. */
  keepUntagged?: boolean;
  /** Also drop the build cache (by default its layers are kept, so rebuilds stay cached). */
  buildCache?: boolean;
}

export interface PruneResult {
  /** Build cache entries dropped. */
  cacheEntries: number;
  /** Untagged images removed (manifest digests). */
  images: Digest[];
  blobs: { digest: Digest; size: number }[];
  snapshots: string[];
  /** Builds whose failed step's kept state (tsbuild debug) was removed. */
  keptStates: string[];
  /** Bytes freed: blob sizes plus the disk usage of removed snapshots. */
  bytes: number;
}

/**
 * Removes untagged images (docker's dangling `<none>` images, unless `keepUntagged`; not the
 * images of a named manifest list), then what
 * no image references: blobs (the store's mark and sweep) and snapshots (committed ones whose
 * chainID no image uses, and every active or view snapshot: with the store's exclusive lock
 * held, no build is running that could own one).
 */
export async function prune(store: Store, s: OverlaySnapshotter, opts: PruneOptions = {}): Promise<PruneResult> {
  return store.withLock('exclusive', async () => {
    const images: Digest[] = [];
    if (!opts.keepUntagged) {
      // An image a named manifest list holds is not dangling: the list is its name (docker and
      // podman keep a list's instances the same way).
      const listed = new Set<string>();
      for (const rec of await store.listImages()) {
        if (rec.name === undefined || !isIndexMediaType(rec.descriptor.mediaType)) continue;
        try {
          for (const m of (await store.readJSON<ImageIndex>(rec.descriptor.digest)).manifests ?? []) listed.add(m.digest);
        } catch {
          // a broken list holds nothing; fsck reports it
        }
      }
      for (const rec of await store.listImages()) {
        if (rec.name !== undefined || listed.has(rec.descriptor.digest)) continue;
        await store.removeImage(rec.descriptor.digest);
        images.push(rec.descriptor.digest);
      }
    }
    const keep = new Set<string>();
    for (const rec of await store.listImages()) {
      try {
        const config: ImageConfig = await store.image(rec.descriptor).config();
        for (const c of chainIds(config.rootfs.diff_ids)) keep.add(c);
      } catch {
        // a broken image keeps nothing alive; fsck reports it
      }
    }
    // Failed steps kept for `tsbuild debug` go, records and snapshots (issue 19).
    const builds = new BuildRecords(store.root);
    const keptStates: string[] = [];
    let bytes = 0;
    for (const rec of await builds.list()) {
      const state = await readKeptState(rec);
      if (state && (await s.exists(state.snapshot))) bytes += (await s.usage(state.snapshot).catch(() => ({ size: 0 }))).size;
      if (await removeKeptState(builds, s, rec)) keptStates.push(rec.id);
    }
    const infos: SnapshotInfo[] = [];
    await s.walk((i) => {
      infos.push(i);
    });
    const removed: string[] = [];
    // Remove leaves first: a snapshot with children cannot go before them.
    // A `tsbuild mount` view is the user's until `tsbuild umount`: kept, with its parents.
    // A working container's snapshot is the container's until `tsbuild rm`: kept, with its parents
    // (one whose container has no record, left by a crash in `from`, goes).
    const records = await new ContainerRecords(store).list();
    const containerIds = new Set(records.map((r) => r.id));
    const owned = (i: SnapshotInfo) => i.labels[CONTAINER_LABEL] !== undefined && containerIds.has(i.labels[CONTAINER_LABEL]);
    // A kept state's snapshot is its record's while the record keeps the state (as a container's
    // is the container's); one whose record is gone goes.
    const keptBy = new Set<string>();
    for (const rec of await builds.list()) if (await readKeptState(rec)) keptBy.add(rec.id);
    const kept = (i: SnapshotInfo) => i.labels[KEPT_LABEL] !== undefined && keptBy.has(i.labels[KEPT_LABEL]);
    let pending = infos.filter((i) => !(i.kind === 'committed' && keep.has(i.name)) && i.labels[MOUNT_LABEL] === undefined && !owned(i) && !kept(i));
    for (let progress = true; progress && pending.length > 0; ) {
      progress = false;
      const parents = new Set(infos.filter((i) => !removed.includes(i.name)).map((i) => i.parent).filter((p): p is string => p !== undefined));
      for (const i of pending) {
        if (parents.has(i.name)) continue;
        const u = await s.usage(i.name).catch(() => ({ size: 0 }));
        await s.remove(i.name);
        bytes += u.size;
        removed.push(i.name);
        progress = true;
      }
      pending = pending.filter((i) => !removed.includes(i.name));
    }
    await s.cleanup();
    // Cached steps keep their blobs; their snapshots are unpacked again when a build needs them.
    const cache = new BuildCache(path.join(store.root, 'cache'));
    const cacheEntries = opts.buildCache ? await cache.clear() : 0;
    // A working container keeps its base image's blobs, even once the image's name is gone.
    const containers = records.flatMap((r) => (r.image ? [r.image.manifest.digest] : []));
    const gc = await store.gc({ keep: [...containers, ...(opts.buildCache ? [] : await cache.roots())] });
    await pruneCompressionRecords(store);
    return { cacheEntries, images, blobs: gc.removed, snapshots: removed, keptStates, bytes: bytes + gc.bytes };
  });
}
