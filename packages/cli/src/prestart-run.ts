import { existsSync } from 'node:fs';
import path from 'node:path';
import { prestartRun } from '@tsbuild/runtime';
import { defaultStoreRoot } from '@tsbuild/store';

/**
 * `tsbuild [--root DIR] run NAME [--] CMD…` with no flag of the run command's own starts the
 * runtime's helper before the run command's code has even loaded (runtime's prestartRun): node
 * boots in the helper while tsbuild loads its command, reads the store and the container, and
 * the run takes that helper when what it finds wants the default run (WorkingContainer.startRun,
 * runtime's startRun and run() check it). Anything else (a flag, a store without a scratch
 * directory) starts nothing here. Bundled on its own (bundle/prestart.cjs), loaded for `run` only.
 */
export function prestart(globals: string[], rest: string[]): void {
  const [name] = rest;
  if (name === undefined || name.startsWith('-') || rest.length < 2) return;
  const root = rootOf(globals);
  if (root === undefined) return;
  const tmp = path.join(path.resolve(root), 'tmp');
  if (!existsSync(tmp)) return;
  prestartRun(path.join(tmp, `run-${process.pid}-${process.hrtime.bigint().toString(36)}`));
}

/** The store root the global flags, TSBUILD_ROOT or the default name; undefined for flags this does not read. */
function rootOf(globals: string[]): string | undefined {
  if (globals.length === 0) return process.env.TSBUILD_ROOT || defaultStoreRoot();
  if (globals.length === 2 && globals[0] === '--root') return globals[1];
  if (globals.length === 1 && globals[0]!.startsWith('--root=')) return globals[0]!.slice('--root='.length);
  return undefined;
}
