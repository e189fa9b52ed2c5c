export { DEFAULT_PATH } from '@tsbuild/oci';
export { ImageState } from './image-state.js';
export { BuildContext, contextIgnores, readContextFile, type ContextSource } from './context.js';
export { download, downloadName, extractArchive, isArchive } from './add-sources.js';
export { makeParents, stageTree } from './staged-tree.js';
export { type RunMount, cacheMountDirName, parseRunMount } from './run-mounts.js';
export { type ResolvedUser, resolveOwner, resolveUser } from './user.js';
export { runImage, type RunImageOptions, type RunDefaults } from './run-image.js';
export { type CopyFiles, type CopySource, type CopySpec, type CopySourceEnv, resolveCopy } from './copy-sources.js';
export { CONTAINER_LABEL, type ContainerRecord, ContainerRecords } from './records.js';
export {
  WorkingContainer,
  imageSnapshot,
  DIRECT_COPY_MAX_ENTRIES,
  type ContainerEnv,
  type BuildMode,
  type FromOptions,
  type ContainerRunOptions,
  type CopyOptions,
  type CommitOptions,
  type CommitResult,
} from './working-container.js';
export {
  applyConfig,
  editConfig,
  configChangesFromFlags,
  goDuration,
  parseGoDuration,
  shellWords,
  splitCsv,
  type ConfigChanges,
  type ConfigEdit,
  type CommitInfo,
  type EditedImageConfig,
  type DockerContainerConfig,
  type ConfigFlagValues as ConfigFlagInput,
} from './config-editor.js';
export { type PullPolicy, registryFailure, storedOrPulled } from './pull-image.js';
