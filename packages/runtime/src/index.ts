export type { Mount } from './mount-spec.js';
export { run, type RunSpec, type RunIO, type RunResult } from './run.js';
export { copyInto } from './copy-into.js';
export type { CopyOp } from './helper-protocol.js';
