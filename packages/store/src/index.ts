export { Store, type FsckReport, type FsckProblem } from './store.js';
export { DEFAULT_ROOT, ROOTLESS_UID_ENV, defaultStoreRoot } from './default-root.js';
export { runScratchDir, runScratchOwner } from './run-scratch.js';
export { type ContentStore, type BlobWriter, type BlobInfo } from './content-store.js';
export { type ImageRecord, normaliseName } from './image-names.js';
export { type Image, type Layer, pickPlatform } from './image.js';
export {
  ingestLayer,
  DEFAULT_GZIP_LEVEL,
  type IngestLayerOptions,
  type IngestedLayer,
  type LayerCompression,
} from './layer-ingest.js';
export {
  createParallelGzip,
  DEFAULT_GZIP_CHUNK_SIZE,
  DEFAULT_GZIP_CONCURRENCY,
  type ParallelGzipOptions,
} from './parallel-gzip.js';
export { createZstdCompress, createZstdDecompress, DEFAULT_ZSTD_LEVEL, type ZstdOptions } from './zstd-stream.js';
export {
  compressImage,
  compressLayer,
  pruneCompressionRecords,
  type CompressImageOptions,
  type CompressedLayerEvent,
} from './compress-image.js';
export { saveArchive, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from './archive-save.js';
export { loadArchive, type LoadedImage } from './archive-load.js';
export { writeOutputFile } from './output-file.js';
export { FileLock, type LockMode } from './file-lock.js';
export { countedStream, PROGRESS_STEP } from './counted-stream.js';
export { writeImage, type WrittenImage } from './write-image.js';
export { type ListFormat, configPlatform, emptyManifestList, listMediaType, readManifestList, samePlatform, withEntry, withoutEntry, writeManifestList } from './manifest-list.js';
export { readListSources, type RemoteSources } from './list-sources.js';
