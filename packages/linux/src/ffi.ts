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
  return nativeAddon(require) ?? (require('koffi') as Koffi);
});

/** glibc, loaded once: each module declares the functions it needs from it on its own first use. */
export const libc = lazy(() => koffi().load('libc.so.6'));

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
