import { createRequire } from 'node:module';
import path from 'node:path';
import { lazy } from '@tsbuild/oci';

/**
 * Files that ship beside the runtime's code, found through the package's own name so that they
 * resolve the same from src/ (tests), from dist/ and from the CLI's bundle (where import.meta.url
 * is the bundle's, not this file's). Resolved on first use: the lookup walks node_modules (~4 ms),
 * and most commands start no container.
 */
const root = lazy(() => path.dirname(createRequire(import.meta.url).resolve('@tsbuild/runtime/package.json')));

/** The helper a RUN step's namespaces are set up by: dist/helper.js bundled into one file (scripts/bundle-helper.mjs). */
export const helperPath = (): string => path.join(root(), 'dist', 'helper.cjs');

/** Directory of our newuidmap/newgidmap stand-ins. */
export const idMapTools = (): string => path.join(root(), 'bin');
