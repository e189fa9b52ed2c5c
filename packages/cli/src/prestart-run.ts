import path from 'node:path';
import { prestartRun } from '@tsbuild/runtime';
import { defaultStoreRoot, runScratchDir } from '@tsbuild/store';
import { needsUserNamespace } from './user-namespace.js';

/** Flags of `run` that change nothing its helper's start depends on, booleans and ones with a value. */
const NEUTRAL_BOOLEANS = new Set(['--rm', '--add-history']);
const NEUTRAL_WITH_VALUE = new Set(['-e', '--env', '-w', '--workdir', '--workingdir', '-u', '--user', '--hostname', '--entrypoint']);

/**
 * `tsbuild [--root DIR] run [--rm] [-e K=V] [-w DIR] [-u USER] [--hostname H] [--entrypoint E] NAME …`
 * (no flag that changes how its container starts) starts the runtime's helper before the run
 * command's code has even loaded (runtime's prestartRun): node boots in the helper while tsbuild
 * loads its command, reads the store and the container, and the run takes that helper when what
 * it finds wants the default run (WorkingContainer.startRun, runtime's startRun and run() check
 * it). Anything else (another flag, a store without a scratch directory, a command main runs
 * again in a user namespace) starts nothing here. Bundled on its own (bundle/prestart.cjs), loaded
 * for `run` only: by bin/run.cjs before main loads for `tsbuild run …`, by main for `tsbuild
 * GLOBAL-FLAGS run …`.
 */
export function prestart(globals: string[], rest: string[]): void {
  // A command main will run again in a user namespace starts its helper there.
  if (needsUserNamespace('run')) return;
  let i = 0;
  for (; i < rest.length && rest[i]!.startsWith('-'); i++) {
    const a = rest[i]!;
    if (NEUTRAL_BOOLEANS.has(a)) continue;
    const eq = a.indexOf('=');
    if (!NEUTRAL_WITH_VALUE.has(eq > 0 ? a.slice(0, eq) : a)) return;
    if (eq < 0) i++;
  }
  if (rest[i] === undefined) return;
  const root = rootOf(globals);
  if (root === undefined) return;
  const scratchDir = runScratchDir(path.resolve(root), `early-${process.hrtime.bigint().toString(36)}`);
  if (scratchDir !== undefined) prestartRun(scratchDir);
}

/** The store root the global flags, TSBUILD_ROOT or the default name; undefined for flags this does not read. */
function rootOf(globals: string[]): string | undefined {
  if (globals.length === 0) return process.env.TSBUILD_ROOT || defaultStoreRoot();
  if (globals.length === 2 && globals[0] === '--root') return globals[1];
  if (globals.length === 1 && globals[0]!.startsWith('--root=')) return globals[0]!.slice('--root='.length);
  return undefined;
}
