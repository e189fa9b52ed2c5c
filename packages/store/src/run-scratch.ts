import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** tmp/run-<pid>-…: a run's scratch directory made before its run holds the store's lock. */
const RUN_SCRATCH = /^run-(\d+)-/;

/**
 * The scratch directory (in the store's tmp/) of a run that starts before it holds the store's
 * lock: `tsbuild run` starts its helper from it first (WorkingContainer.startRun, the CLI's early
 * start), so a `prune` may run meanwhile. Named after this process, which gc checks: it empties
 * tmp/ but for the directories of live processes (runScratchOwner). Undefined where the store
 * has no tmp/ yet: then it has no container or image to run either, and nothing starts early.
 */
export function runScratchDir(root: string, tag: string): string | undefined {
  const tmp = join(root, 'tmp');
  return existsSync(tmp) ? join(tmp, `run-${process.pid}-${tag}`) : undefined;
}

/** The pid in the name of a run's scratch directory (runScratchDir); undefined for any other name. */
export function runScratchOwner(name: string): number | undefined {
  const pid = RUN_SCRATCH.exec(name)?.[1];
  return pid === undefined ? undefined : Number(pid);
}
