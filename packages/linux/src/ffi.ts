import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');
let loaded: Koffi | undefined;

/**
 * koffi, loaded on first use. A command that never calls into libc does not pay for it, and one
 * that locks the store loads it only when it takes the lock: push and pull have sent their first
 * requests to the registry by then. Loaded through require(): ~5 ms here where `import` takes
 * ~8 (node 20 translating koffi's ES module wrapper). Every module of this package uses this one
 * instance: a second load of the addon would be a second, separate registry of types.
 */
export function koffi(): Koffi {
  loaded ??= createRequire(import.meta.url)('koffi') as Koffi;
  return loaded;
}
