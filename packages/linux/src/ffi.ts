import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { lazy } from '@tsbuild/oci';

type Koffi = typeof import('koffi');

/**
 * koffi, loaded on first use. A command that never calls into libc does not pay for it, and one
 * that locks the store loads it only when it takes the lock: push and pull have sent their first
 * requests to the registry by then. Every module of this package uses this one instance: a
 * second load of the addon would be a second, separate registry of types.
 */
export const koffi = lazy((): Koffi => {
  const require = createRequire(import.meta.url);
  const k = nativeAddon(require) ?? (require('koffi') as Koffi);
  (globalThis as Record<symbol, unknown>)[EXIT_NOW] = exitNow;
  return k;
});

/** glibc, loaded once: each module declares the functions it needs from it on its own first use. */
export const libc = lazy(() => koffi().load('libc.so.6'));

/**
 * Where koffi is loaded, the CLI (bin/run.cjs) ends a command that succeeded with `_exit(2)` once
 * node's own 'exit' listeners have run, instead of node's exit: that joins V8's and libuv's
 * threads and runs the C library's exit handlers (koffi's among them), ~1.5 ms a command here
 * (31 interleaved runs of the from/run/commit script: 408.0 → 403.6 ms). Nothing is lost: on Linux
 * node writes stdout and stderr synchronously, and the 'exit' listeners (code caches, a started
 * run's release) have run by then. Set only where koffi is loaded already: loading it to exit
 * would cost more.
 */
const EXIT_NOW = Symbol.for('tsbuild.exit-now');

function exitNow(code: number): never {
  libc().func('void _exit(int)')(code);
  throw new Error('_exit returned');
}

/** musl's dynamic loader, by node's process.arch: where it exists, koffi's loader chooses. */
const MUSL_LOADER: Record<string, string> = { x64: '/lib/ld-musl-x86_64.so.1', arm64: '/lib/ld-musl-aarch64.so.1' };

/**
 * koffi's native addon, required from koffi's platform package (@koromix/koffi-linux-<arch>,
 * which koffi pins to its own version). koffi's loader ends at the same file after resolving both
 * packages, reading node's ELF header to tell glibc from musl, and wrapping functions deprecated
 * since koffi 2 that we do not call: ~9 ms of `tsbuild push` here, on the way to its first upload,
 * against ~1.5. Taken for the glibc build on a system without musl's loader only; anything
 * unexpected (another layout, a failed load) leaves the choice to koffi's loader.
 */
function nativeAddon(require: NodeRequire): Koffi | undefined {
  const musl = MUSL_LOADER[process.arch];
  if (process.platform !== 'linux' || musl === undefined || existsSync(musl)) return undefined;
  try {
    const addon = require(`@koromix/koffi-linux-${process.arch}/linux_${process.arch}/koffi.node`) as Koffi & { version?: unknown };
    return typeof addon.version === 'string' && typeof addon.load === 'function' ? addon : undefined;
  } catch {
    return undefined;
  }
}
