// Issue 17's measurements: a cold build of fixtures/hello by an ordinary user (tsbuild re-executes
// itself in a user namespace; RUN gets slirp4netns) against the same build as root, and against
// `buildah bud --layers` run rootless by the same user (overlay storage, runc). The user is made
// here and removed afterwards with everything it stored.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync } from 'node:fs';
import path from 'node:path';

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export function benchRootless({ bin, compare, hello, archive, rootBuild }) {
  const user = `tsbench${process.pid}`;
  sh('useradd', ['-m', user]);
  const home = `/home/${user}`;
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: home, USER: user, LOGNAME: user };
  const asUser = (cmd, ...args) => sh('setpriv', ['--reuid', user, '--regid', user, '--init-groups', '--', cmd, ...args], { cwd: home, env });
  try {
    const ctx = path.join(home, 'hello');
    cpSync(hello, ctx, { recursive: true });
    const base = path.join(home, 'busybox.tar');
    copyFileSync(archive, base);
    chmodSync(base, 0o644);
    sh('chown', ['-R', `${user}:${user}`, ctx, base]);
    asUser(bin, 'load', '-i', base);
    const buildah = (...args) => asUser('buildah', '--storage-driver', 'overlay', ...args);
    buildah('pull', '-q', `oci-archive:${base}`);
    const rootless = () => asUser(bin, 'build', '-q', '--no-cache', '-t', 'hello', ctx);
    compare('rootless cold build of fixtures/hello', rootless, rootBuild, 'tsbuild as root');
    compare('rootless cold build of fixtures/hello', rootless, () => buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--no-cache', '-q', '-t', 'hello', ctx), 'buildah rootless');
  } finally {
    // Both stores hold files of the user's subordinate ids: only its namespace may delete them.
    spawnSync('setpriv', ['--reuid', user, '--regid', user, '--init-groups', '--', 'buildah', 'unshare', 'rm', '-rf', `${home}/.local/share/containers`], { cwd: home, env, stdio: 'ignore' });
    spawnSync('setpriv', ['--reuid', user, '--regid', user, '--init-groups', '--', bin, 'unshare', 'rm', '-rf', `${home}/.local/share/tsbuild`], { cwd: home, env, stdio: 'ignore' });
    spawnSync('userdel', ['-r', user], { stdio: 'ignore' });
  }
}
