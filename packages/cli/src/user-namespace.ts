import { childProcess } from '@tsbuild/oci';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as os, userInfo } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { CAP_SYS_ADMIN, findOnPath, hasEffectiveCapability, readIdMap, toolPath } from '@tsbuild/linux';
import { ROOTLESS_UID_ENV } from '@tsbuild/store';
import { CliError } from './cli-kit.js';

/**
 * Rootless tsbuild, buildah's way (pkg/unshare: MaybeReexecUsingUserNamespace): a command that
 * needs to mount or to own files of other ids re-executes itself in a new user namespace where the
 * caller is root, with a mount namespace of its own. The mounts it makes there (overlay with
 * `userxattr`, the run's binds) belong to that namespace and go with its last process.
 *
 * The maps, as buildah and podman make them: uid 0 inside is the caller, uids 1…N are the
 * caller's first range of subordinate ids (/etc/subuid, /etc/subgid), written by shadow's setuid
 * newuidmap/newgidmap (Debian's `uidmap`), which util-linux's unshare (2.38) runs for us. A file a
 * RUN chowns to 1000 is owned by subordinate id 1000 - 1 + start on the host and by 1000 in the
 * layer, since the layer is read inside the namespace.
 *
 * A process already holding CAP_SYS_ADMIN (root, or a shell of `tsbuild unshare`) runs as it
 * is. One that is root of a user namespace without it (a container started without
 * CAP_SYS_ADMIN, e.g. a Kubernetes pod with `hostUsers: false`) makes a child namespace mapping
 * every id it has onto the same ids: its CAP_SETUID/CAP_SETGID in its own namespace let it write
 * those maps itself (user_namespaces(7)), through the runtime's newuidmap/newgidmap stand-ins.
 */

/**
 * Set in the re-executed command's environment: `transient` there (its namespace ends with it),
 * `session` in a `tsbuild unshare` shell (it lasts as long as the shell).
 */
export const USERNS_ENV = 'TSBUILD_USERNS';

/** Commands that neither open the store nor make namespaces: they run as the caller is. */
const AS_CALLED = new Set(['version', 'login', 'logout']);

export function needsUserNamespace(command: string): boolean {
  return !AS_CALLED.has(command) && !hasEffectiveCapability(CAP_SYS_ADMIN);
}

interface IdRange {
  start: number;
  count: number;
}

/**
 * Runs this very command again (`process.argv`) in a new user and mount namespace and resolves
 * with its exit status. stdin, stdout and stderr are the caller's, so a terminal stays a terminal.
 */
export async function reexecInUserNamespace(): Promise<number> {
  const uid = process.getuid?.() ?? 0;
  const args = ['--pdeathsig', 'KILL', '--', 'unshare', '--user', '--mount', '--propagation', 'private'];
  const env: NodeJS.ProcessEnv = { ...process.env, [USERNS_ENV]: 'transient' };
  if (uid === 0) {
    // Root of a user namespace without CAP_SYS_ADMIN: keep every id we have, maps written directly.
    const size = mappedSize('/proc/self/uid_map');
    const gsize = mappedSize('/proc/self/gid_map');
    args.push(`--map-users=0,0,${size}`, `--map-groups=0,0,${gsize}`);
    env.PATH = `${idMapStandIns()}:${toolPath()}`;
  } else {
    const user = userInfo();
    const subuid = subordinateRange('/etc/subuid', user.username, uid, 'uids');
    const subgid = subordinateRange('/etc/subgid', user.username, uid, 'gids');
    for (const tool of ['newuidmap', 'newgidmap']) {
      if (findOnPath(tool, toolPath()) === undefined) throw new CliError(`rootless: ${tool} is not installed: install Debian's uidmap package (apt-get install uidmap), which maps the subordinate ids`, 1);
    }
    args.push('--map-user=0', '--map-group=0', `--map-users=${subuid.start},1,${subuid.count}`, `--map-groups=${subgid.start},1,${subgid.count}`);
    env[ROOTLESS_UID_ENV] = String(uid);
  }
  if (readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim() === '0') {
    throw new CliError('rootless: user namespaces are disabled on this machine (user.max_user_namespaces is 0): enable them with sysctl -w user.max_user_namespaces=28633', 1);
  }
  // unshare's and newuidmap's complaints go to fd 2 = a pipe until the shell restores the caller's
  // stderr (fd 3) just before node starts, so a failure to make the namespace becomes one line.
  args.push('--', '/bin/sh', '-c', 'exec 2>&3 3>&-; exec "$@"', 'sh', process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2));
  const child = childProcess().spawn('setpriv', args, { stdio: ['inherit', 'inherit', 'pipe', 2], env });
  let diagnostics = '';
  (child.stderr as Readable).setEncoding('utf8').on('data', (d: string) => {
    if (diagnostics.length < 8192) diagnostics += d;
  });
  // The terminal's Ctrl-C reaches the inner command too, which cleans up and exits: wait for it.
  // A TERM or HUP sent to us alone is passed on.
  const ignore = (): void => {};
  const forward = (sig: NodeJS.Signals) => (): void => void child.kill(sig);
  const handlers: [NodeJS.Signals, () => void][] = [['SIGINT', ignore], ['SIGTERM', forward('SIGTERM')], ['SIGHUP', forward('SIGHUP')], ['SIGQUIT', ignore]];
  for (const [s, h] of handlers) process.on(s, h);
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new CliError(`rootless: cannot start setpriv/unshare (util-linux): ${e.message}`, 1)));
    child.on('close', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      const line = diagnostics.split('\n').find((l) => /^(setpriv|unshare|newuidmap|newgidmap|sh):/.test(l));
      if (line !== undefined && code !== 0) {
        reject(new CliError(`rootless: cannot create the user namespace: ${line.trim()}${hint(line)}`, 1));
        return;
      }
      resolve(signal !== null ? 128 + (os.signals[signal] ?? 0) : (code ?? 1));
    });
  });
}

function hint(line: string): string {
  if (/unshare failed: (Operation not permitted|No space left on device)/.test(line)) {
    return ' (unprivileged user namespaces are refused here: check user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns, or the seccomp profile of the container tsbuild runs in)';
  }
  if (/newuidmap|newgidmap/.test(line)) return ' (check the ranges in /etc/subuid and /etc/subgid, and that newuidmap/newgidmap are setuid root)';
  return '';
}

/** The first range of subordinate ids of the user in FILE (lines `name-or-uid:start:count`). */
export function subordinateRange(file: string, name: string, uid: number, what: string): IdRange {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // a missing file is the same as a missing entry
  }
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if ((who === name || who === String(uid)) && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? '') && Number(count) > 0) return { start: Number(start), count: Number(count) };
  }
  throw new CliError(
    `rootless: no subordinate ${what} for ${name} in ${file}: add a range as root, e.g. usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${name}`,
    1,
  );
}

/** How many ids a map of this process covers, from id 0 up (its first line: `0 outside count`). */
function mappedSize(file: string): number {
  const map = readIdMap(file);
  const first = map[0];
  if (first === undefined || first.inside !== 0 || !(first.count > 0)) throw new CliError(`rootless: ${file} maps no range starting at id 0 (it reads ${map.map((r) => `${r.inside} ${r.outside} ${r.count}`).join(', ')})`, 1);
  return first.count;
}

/** The runtime's newuidmap/newgidmap stand-ins (they write the maps without shadow's checks). */
function idMapStandIns(): string {
  return path.join(path.dirname(createRequire(import.meta.url).resolve('@tsbuild/runtime/package.json')), 'bin');
}
