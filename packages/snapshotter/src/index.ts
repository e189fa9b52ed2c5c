export type { Mount, SnapshotInfo, SnapshotKind, Snapshotter } from './snapshotter.js';
export { OverlaySnapshotter } from './overlay-snapshotter.js';
export { diff, tarDirectory, type TarOptions } from './diff.js';
export { apply, type ApplyOptions } from './apply.js';
export { unpack } from './unpack.js';
export { decompressed } from './decompress.js';
