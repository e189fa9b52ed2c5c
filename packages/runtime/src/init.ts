import { accessSync, constants } from 'node:fs';
import { posix } from 'node:path';
import { FailedPreconditionError } from '@tsbuild/oci';

/**
 * Inits that reap zombies and forward signals, in order of preference, all taking
 * `INIT -- PROGRAM ARGS`. tini-static first: Debian's `tini` package ships it (docker's
 * docker-init is tini too). A static one is not required: the init is exec'd before the helper
 * pivots into the rootfs, so its shared libraries are already mapped when the host's / vanishes.
 */
const INITS = ['tini-static', 'tini', 'catatonit', 'dumb-init'];

/** The host path of the first init found on PATH (and the usual sbin/bin directories). */
export function findInit(pathVar = process.env.PATH ?? ''): string {
  const dirs = [...pathVar.split(':').filter((d) => d.startsWith('/')), '/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/libexec/podman'];
  for (const name of INITS) {
    for (const dir of dirs) {
      const p = posix.join(dir, name);
      try {
        accessSync(p, constants.X_OK);
        return p;
      } catch {
        // not here
      }
    }
  }
  throw new FailedPreconditionError(`run: init requested but none of ${INITS.join(', ')} is installed (apt-get install tini)`);
}
