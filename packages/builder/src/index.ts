export { build, writeImage, DEFAULT_PATH, type BuildOptions, type BuildResult, type BuildEvent } from './build.js';
export { parseDockerfile, DockerfileError, type Instruction, type Stage, type ParsedDockerfile } from './dockerfile.js';
export { expandWord, expandWords } from './expand.js';
export { BuildContext } from './context.js';
export { importRootfs, type ImportOptions } from './import-rootfs.js';
export { prune, type PruneResult } from './prune.js';
export { resolveUser } from './user.js';
export { runImage, type RunImageOptions, type RunDefaults } from './run-image.js';
export * from './inspect/index.js';
