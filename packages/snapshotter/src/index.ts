export type { Mount, SnapshotInfo, SnapshotKind, Snapshotter } from './snapshotter.js';
export { OverlaySnapshotter } from './overlay-snapshotter.js';
export { diff, tarDirectory, type TarOptions } from './diff.js';
export { apply, type ApplyOptions } from './apply.js';
export { unpack } from './unpack.js';
export { decompressed } from './decompress.js';
export { TarParser, type TarSink } from './tar-parser.js';
export { encodeHeader, padding, END_OF_ARCHIVE, type TarHeader, type TarType } from './tar-format.js';
export { MOUNT_LABEL, MOUNT_IMAGE_LABEL } from './labels.js';
