export { Store, DEFAULT_ROOT, type FsckReport, type FsckProblem } from './store.js';
export { type ContentStore, type BlobWriter, type BlobInfo } from './content-store.js';
export { type ImageRecord, normaliseName } from './image-names.js';
export { type Image, type Layer, pickPlatform } from './image.js';
export { ingestLayer, DEFAULT_GZIP_LEVEL } from './layer-ingest.js';
export { saveArchive, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from './archive-save.js';
export { loadArchive, type LoadedImage } from './archive-load.js';
export { type LockMode } from './file-lock.js';
