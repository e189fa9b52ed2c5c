import { existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { CLONE, MNT_DETACH, MS, mount, pivotRoot, sethostname, setLinkUp, umount, unshareNamespaces } from '@tsbuild/linux';
import { bindEtcFiles, etcFileContents, prepareEtcLayer } from './etc-files.js';
import { HelperFailure } from './helper-failure.js';
import type { ExtraMount, RunRequest } from './helper-protocol.js';
import { mountAll } from './mount-spec.js';
import { hostPath, resolveInRoot } from './root-path.js';
import { maskPaths } from './security-paths.js';

/** Host device nodes a container gets in its /dev (the OCI runtime spec's default devices). */
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/**
 * Turns the helper, already in fresh mount, PID, UTS and IPC namespaces, into the container's
 * world: the rootfs at /, its own /proc, a /dev tmpfs, a read-only /sys and its hostname.
 * Every mount made here belongs to this namespace and dies with it.
 */
export function enterContainer(req: RunRequest): void {
  // unshare(1) already sets private propagation; do it again so nothing we mount can leak to the
  // host's namespace through a shared peer group whatever unshare's defaults become.
  mount(null, '/', null, MS.REC | MS.PRIVATE);
  if (req.network === 'none') setLinkUp('lo');
  const sec = req.security;
  // A cgroup namespace rooted at the cgroup we are in now (the run's, joined by main()): the
  // command's /proc/self/cgroup then shows "/" (cgroup_namespaces(7)). Only this thread moves,
  // and it is the one that execve's.
  if (sec !== undefined) unshareNamespaces(CLONE.NEWCGROUP);

  const root = req.target;
  const scratch = posix.dirname(root);
  mountAll(sec === undefined ? req.rootfs : prepareEtcLayer(req.rootfs, scratch), root);

  const proc = mountpoint(root, '/proc');
  mount('proc', proc, 'proc', MS.NOSUID | MS.NODEV | MS.NOEXEC);

  const dev = mountpoint(root, '/dev');
  mount('tmpfs', dev, 'tmpfs', MS.NOSUID | MS.STRICTATIME, 'mode=755,size=65536k');
  for (const name of DEVICES) {
    if (!existsSync(`/dev/${name}`)) continue;
    // A bind of the host's node: mknod would need the device cgroup's blessing in some setups.
    writeFileSync(`${dev}/${name}`, '', { mode: 0o666 });
    mount(`/dev/${name}`, `${dev}/${name}`, null, MS.BIND);
  }
  mkdirSync(`${dev}/pts`);
  mount('devpts', `${dev}/pts`, 'devpts', MS.NOSUID | MS.NOEXEC, 'newinstance,ptmxmode=0666,mode=0620');
  symlinkSync('pts/ptmx', `${dev}/ptmx`);
  mkdirSync(`${dev}/shm`);
  mount('shm', `${dev}/shm`, 'tmpfs', MS.NOSUID | MS.NODEV | MS.NOEXEC, 'mode=1777,size=65536k');
  // POSIX message queues of the run's own IPC namespace, as runc mounts them.
  mkdirSync(`${dev}/mqueue`);
  mount('mqueue', `${dev}/mqueue`, 'mqueue', MS.NOSUID | MS.NODEV | MS.NOEXEC);
  symlinkSync('/proc/self/fd', `${dev}/fd`);
  symlinkSync('/proc/self/fd/0', `${dev}/stdin`);
  symlinkSync('/proc/self/fd/1', `${dev}/stdout`);
  symlinkSync('/proc/self/fd/2', `${dev}/stderr`);

  // A fresh sysfs shows the container's network namespace; read-only as Docker mounts it.
  const sys = mountpoint(root, '/sys');
  if (sec?.userns !== undefined && req.network === 'host') {
    // sysfs may only be mounted by the user namespace owning the network namespace (sysfs(5)); in
    // the host's network namespace a read-only bind of the host's /sys is what runc does too.
    mount('/sys', sys, null, MS.BIND | MS.REC);
    mount(null, sys, null, MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  } else {
    mount('sysfs', sys, 'sysfs', MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  }

  for (const m of req.mounts ?? []) mountExtra(root, m);

  if (sec !== undefined) bindEtcFiles(root, scratch, etcFileContents(sec.etcFiles, req.hostname, req.network));

  // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the
  // rootfs visible (pivot_root(2), "NOTES"), with no directory needed for the old root.
  process.chdir(root);
  pivotRoot('.', '.');
  umount('.', MNT_DETACH);
  process.chdir('/');
  if (sec !== undefined) maskPaths(sec.maskedPaths, sec.readonlyPaths);
  sethostname(req.hostname);
}

/**
 * A RUN --mount: a bind of a host file or directory, or a tmpfs. A file is bound onto an empty
 * file (a bind needs a mountpoint of the same kind as its source, mount(2) ENOTDIR).
 */
function mountExtra(root: string, m: ExtraMount): void {
  const file = m.type === 'bind' && !statSync(m.source!).isDirectory();
  const p = mountpoint(root, m.destination, file);
  try {
    mountAll([{ type: m.type, source: m.type === 'bind' ? m.source! : 'tmpfs', options: m.type === 'bind' ? ['rbind', ...m.options] : m.options }], p);
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot mount ${m.type === 'bind' ? m.source! : 'tmpfs'} at ${m.destination}: ${(e as Error).message}`);
  }
}

/**
 * The host path of a mountpoint inside the rootfs, created if missing. An image's symlink in its
 * place is resolved inside the rootfs, so a crafted image cannot make us mount over a host path.
 */
function mountpoint(root: string, path: string, file = false): string {
  const p = hostPath(root, resolveInRoot(root, path));
  try {
    if (file) {
      mkdirSync(posix.dirname(p), { recursive: true, mode: 0o755 });
      if (!existsSync(p)) writeFileSync(p, '', { mode: 0o644 });
    } else mkdirSync(p, { recursive: true, mode: 0o755 });
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot create mountpoint ${path} in the rootfs (read-only?): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return p;
}
