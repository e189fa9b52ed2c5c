export { type EntryType, type FileMeta, type LayerEntry, normalisePath, openLayerTar, scanLayerTar } from './layer-entries.js';
export { FlatTree, type FlatNode } from './flat-tree.js';
export {
  diffImage,
  flattenImage,
  applyLayer,
  scanLayers,
  type ChangeKind,
  type Change,
  type LayerChanges,
  type WastedFile,
  type DuplicateContent,
  type WasteReport,
  type ImageDiffReport,
  type DiffOptions,
} from './layer-diff.js';
export { pathFilter } from './path-filter.js';
export { imageHistory, type HistoryRow } from './history.js';
export { compareImages, compareTrees, compareConfigs, type ImageComparison, type FileDifference, type ConfigDifference } from './image-compare.js';
export { openImageArg, isRemoteImage, REMOTE_PREFIX } from './image-source.js';
export { exportRootfs } from './export-rootfs.js';
export {
  mountImage,
  unmountImage,
  listMounts,
  releaseMount,
  type ImageMount,
} from './image-mount.js';
