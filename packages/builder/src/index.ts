export { build, type BuildOptions, type BuildResult, type BuildEvent } from './build.js';
export { parseDockerfile, DockerfileError, type Instruction, type Stage, type ParsedDockerfile } from './dockerfile.js';
export { expandWord, expandWords } from './expand.js';
export { importRootfs, type ImportOptions } from './import-rootfs.js';
export { prune, type PruneResult } from './prune.js';
export { resolveUser, runImage, type RunImageOptions, type RunDefaults, DEFAULT_PATH, BuildContext } from '@tsbuild/container';
export { MAX_SOURCE_DATE_EPOCH } from './build.js';
export { MAX_DOCKERFILE_SIZE } from './dockerfile.js';
export { buildPlatforms, allPlatforms, type MultiPlatformOptions, type MultiPlatformResult } from './multi-platform.js';
