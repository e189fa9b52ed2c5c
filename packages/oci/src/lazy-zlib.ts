import { createRequire } from 'node:module';
import type * as Zlib from 'node:zlib';

let loaded: typeof Zlib | undefined;

/**
 * node:zlib, loaded on first use. Loading it takes ~1.3 ms, which commands that neither compress
 * nor decompress (a push of stored gzip blobs, images, inspect) need not spend at start-up: the
 * CLI bundle would otherwise load it with the first module that names it.
 */
export function zlib(): typeof Zlib {
  loaded ??= createRequire(import.meta.url)('node:zlib') as typeof Zlib;
  return loaded;
}
