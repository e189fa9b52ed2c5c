import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lazy } from '@tsbuild/oci';

/**
 * Set by the CLI's bundle (packages/cli/scripts/bundle.mjs): where this package lies relative to
 * the bundle file, as found when the bundle was made. Undefined outside the bundle.
 */
declare const TSBUILD_RUNTIME_DIR: string | undefined;

/**
 * Files that ship beside the runtime's code, found through the package's own name so that they
 * resolve the same from src/ (tests), from dist/ and from the CLI's bundle (where import.meta.url
 * is the bundle's, not this file's). Resolved on first use: the lookup walks node_modules (~3 ms,
 * on the path of every `tsbuild run`, before its helper can start), and most commands start no
 * container. The bundle knows the way already and only checks it is still there.
 */
const root = lazy(() => {
  if (typeof TSBUILD_RUNTIME_DIR === 'string') {
    const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), TSBUILD_RUNTIME_DIR);
    if (existsSync(path.join(dir, 'package.json'))) return dir;
  }
  return path.dirname(createRequire(import.meta.url).resolve('@tsbuild/runtime/package.json'));
});

/** The helper of a copy into a rootfs: dist/helper.js bundled into one file (scripts/bundle-helper.mjs). */
export const helperPath = (): string => path.join(root(), 'dist', 'helper.cjs');

/** The helper a run's namespaces are set up by: src/run-helper.c, compiled (scripts/build-run-helper.mjs). */
export const runHelperPath = (): string => path.join(root(), 'dist', 'run-helper');

/** Directory of our newuidmap/newgidmap stand-ins. */
export const idMapTools = (): string => path.join(root(), 'bin');
