import { accessSync, constants, mkdirSync, statSync, writeSync } from 'node:fs';
import { posix } from 'node:path';
import { PR, clearCloexec, cloexecFrom, execve, peerClosed, prctl, setGroups, setResGid, setResUid } from '@tsbuild/linux';
import { EXEC_LINE, type RunRequest } from './helper-protocol.js';
import { HelperFailure } from './helper-failure.js';

/** Docker's default PATH when the image sets none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const SIGKILL = 9;

/**
 * Last step of the helper, inside the container: working directory, credentials, descriptor hygiene,
 * then execve(2) so the command replaces the helper as PID 1 of the PID namespace. On failure to
 * start the command it exits 127 (not found) or 126 (not executable), as shells do.
 */
export function execCommand(req: RunRequest, controlFd: number): never {
  if (!req.cwd.startsWith('/')) throw new HelperFailure('INVALID_ARGUMENT', `working directory must be absolute: ${req.cwd}`);
  try {
    mkdirSync(req.cwd, { recursive: true, mode: 0o755 });
    process.chdir(req.cwd);
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot use working directory ${req.cwd}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }

  // Groups first: after setresuid to a user other than root the process may no longer change them.
  setGroups(req.additionalGids);
  setResGid(req.gid);
  setResUid(req.uid);
  // A credential change clears the parent-death signal unshare --kill-child set (prctl(2),
  // PR_SET_PDEATHSIG), so set it again, then check that tsbuild did not die (or give up) in the
  // meantime: its end of the control socket closes when it does.
  prctl(PR.SET_PDEATHSIG, SIGKILL);
  if (peerClosed(controlFd)) process.exit(128 + SIGKILL);
  // From here on the exit status is the command's, or 127/126 as a shell would answer.
  writeSync(controlFd, `${EXEC_LINE}\n`);

  const env = req.env;
  const name = req.args[0];
  const resolved = findExecutable(name, env);
  if ('error' in resolved) fail(resolved.status, resolved.error);

  cloexecFrom(3);
  for (const fd of [0, 1, 2]) clearCloexec(fd);
  try {
    execve(resolved.path, req.args, env);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(127, `${name}: not found`);
    fail(126, `${name}: cannot execute: ${code === 'ENOEXEC' ? 'exec format error' : code === 'EACCES' ? 'permission denied' : String(code)}`);
  }
}

/** execvp(3)'s search, on the PATH of the command's own environment. */
export function findExecutable(name: string, env: string[]): { path: string } | { status: number; error: string } {
  if (name.includes('/')) return { path: name };
  const pathVar = env.findLast((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  let denied: string | undefined;
  for (const dir of pathVar.split(':')) {
    const candidate = posix.join(dir === '' ? '.' : dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
    } catch {
      continue;
    }
    try {
      accessSync(candidate, constants.X_OK);
      return { path: candidate };
    } catch {
      denied ??= candidate;
    }
  }
  if (denied !== undefined) return { status: 126, error: `${denied}: permission denied` };
  return { status: 127, error: `${name}: command not found in PATH ${pathVar}` };
}

function fail(status: number, message: string): never {
  writeSync(2, `tsbuild: ${message}\n`);
  process.exit(status);
}
