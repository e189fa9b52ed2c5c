import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');

/**
 * koffi, loaded on first use. A command that never calls into libc does not pay for it, and one
 * that locks the store loads it only when it takes the lock: push and pull have sent their first
 * requests to the registry by then. Loaded through require(): ~5 ms here where `import` takes
 * ~8 (node 20 translating koffi's ES module wrapper). Every module of this package uses this one
 * instance: a second load of the addon would be a second, separate registry of types.
 */
export const koffi = lazy(() => createRequire(import.meta.url)('koffi') as Koffi);

/**
 * `make()` run once, on first call: declarations of libc functions and koffi types go through it,
 * so importing a module of this package loads nothing (bundlers may run every module of the
 * package's index when one is used).
 */
export function lazy<T>(make: () => T): () => T {
  let value: T | undefined;
  let made = false;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value as T;
  };
}
