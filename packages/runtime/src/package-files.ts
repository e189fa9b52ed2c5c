import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * Files that ship beside the runtime's code, found through the package's own name so that they
 * resolve the same from src/ (tests), from dist/ and from the CLI's bundle (where import.meta.url
 * is the bundle's, not this file's).
 */
const root = path.dirname(createRequire(import.meta.url).resolve('@tsbuild/runtime/package.json'));

/** The helper a RUN step's namespaces are set up by: dist/helper.js bundled into one file (scripts/bundle-helper.mjs). */
export const HELPER = path.join(root, 'dist', 'helper.cjs');

/** Directory of our newuidmap/newgidmap stand-ins. */
export const ID_MAP_TOOLS = path.join(root, 'bin');
