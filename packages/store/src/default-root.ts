import { homedir } from 'node:os';
import { join } from 'node:path';

// Apart from store.ts so that code which needs only the store's place (tsbuild run's early start,
// bundled on its own) does not load the store with it.

/** root's store, as /var/lib/containers/storage is containers-storage's. */
export const DEFAULT_ROOT = '/var/lib/tsbuild';

/**
 * Set by tsbuild when it re-executes itself in a user namespace for an ordinary user (rootless):
 * that user's uid. Inside, the process is uid 0, yet the store must stay the user's.
 */
export const ROOTLESS_UID_ENV = 'TSBUILD_ROOTLESS_UID';

/**
 * The store a command uses when no --root or TSBUILD_ROOT is given: DEFAULT_ROOT for root, and for
 * an ordinary user (also once re-executed in its user namespace) $XDG_DATA_HOME/tsbuild, that is
 * ~/.local/share/tsbuild, as containers-storage keeps a rootless user's images.
 */
export function defaultStoreRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env[ROOTLESS_UID_ENV] === undefined && (process.getuid?.() ?? 0) === 0) return DEFAULT_ROOT;
  const data = env.XDG_DATA_HOME !== undefined && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(env.HOME || homedir(), '.local', 'share');
  return join(data, 'tsbuild');
}
