import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { CLONE, MNT_DETACH, inUserNamespace, major, minor, MS, O_PATH, fdLink, mkdirAllInRoot, mount, openInRoot, pivotRoot, sethostname, setLinkUp, umount, unshareNamespaces, withFd } from '@tsbuild/linux';
import { bindEtcFiles, etcFileContents, prepareEtcLayer } from './etc-files.js';
import { HelperFailure } from './helper-failure.js';
import { INIT_EXE_FD, type ExtraMount, type RunRequest } from './helper-protocol.js';
import type { DeviceNode } from './process-spec.js';
import { mountAll, mountCall } from './mount-spec.js';
import { hostPath, resolveInRoot } from './root-path.js';
import { maskPaths } from './security-paths.js';
import { mountpointFd } from './mountpoint.js';

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
  // A cgroup namespace rooted at the cgroup we are in now (the run's, which tsbuild moved us into): the
  // command's /proc/self/cgroup then shows "/" (cgroup_namespaces(7)). Only this thread moves,
  // and it is the one that execve's.
  if (sec !== undefined) unshareNamespaces(CLONE.NEWCGROUP);

  const root = req.target;
  const scratch = posix.dirname(root);
  // SELinux: every filesystem of the container carries its mount label (runc's `context=` on the
  // rootfs and each tmpfs), so the command's label may use them.
  const context = sec?.selinux !== undefined ? [`context="${sec.selinux.mountLabel}"`] : [];
  const rootfs = sec === undefined ? req.rootfs : prepareEtcLayer(req.rootfs, scratch);
  mountAll(context.length === 0 ? rootfs : rootfs.map((m, i) => (i === 0 ? { ...m, options: [...m.options, ...context] } : m)), root);

  const proc = mountpoint(root, '/proc');
  try {
    mount('proc', proc, 'proc', MS.NOSUID | MS.NODEV | MS.NOEXEC);
  } catch (e) {
    // fs/namespace.c mount_too_revealing: in a user namespace a new proc is refused while the
    // visible one has paths hidden under other mounts, as a container's masked /proc paths are.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM' || !inUserNamespace()) throw e;
    throw new HelperFailure(
      'FAILED_PRECONDITION',
      `mount ${proc}: EPERM (the kernel refuses a new /proc here while this container's /proc has masked paths: run tsbuild's container with --security-opt systempaths=unconfined, or procMount: Unmasked in Kubernetes)`,
    );
  }

  const dev = mountpoint(root, '/dev');
  mount('tmpfs', dev, 'tmpfs', MS.NOSUID | MS.STRICTATIME, ['mode=755', 'size=65536k', ...context].join(','));
  for (const name of DEVICES) {
    if (!existsSync(`/dev/${name}`)) continue;
    // A bind of the host's node: mknod would need the device cgroup's blessing in some setups.
    writeFileSync(`${dev}/${name}`, '', { mode: 0o666 });
    mount(`/dev/${name}`, `${dev}/${name}`, null, MS.BIND);
  }
  for (const d of req.process?.devices ?? []) bindDevice(dev, d);
  mkdirSync(`${dev}/pts`);
  mount('devpts', `${dev}/pts`, 'devpts', MS.NOSUID | MS.NOEXEC, 'newinstance,ptmxmode=0666,mode=0620');
  symlinkSync('pts/ptmx', `${dev}/ptmx`);
  mkdirSync(`${dev}/shm`);
  // docker's and buildah's default 64 MiB (--shm-size): an IPC namespace's own POSIX shared memory.
  mount('shm', `${dev}/shm`, 'tmpfs', MS.NOSUID | MS.NODEV | MS.NOEXEC, ['mode=1777', `size=${req.process?.shmSize ?? 65536 * 1024}`, ...context].join(','));
  // POSIX message queues of the run's own IPC namespace, as runc mounts them.
  mkdirSync(`${dev}/mqueue`);
  mount('mqueue', `${dev}/mqueue`, 'mqueue', MS.NOSUID | MS.NODEV | MS.NOEXEC);
  symlinkSync('/proc/self/fd', `${dev}/fd`);
  // The init, executed through this link (exec-command.ts): PID 1 shows as `init` in ps, as its
  // last component names it, and the link leads nowhere once the init has started.
  if (req.init !== undefined) symlinkSync(`/proc/self/fd/${INIT_EXE_FD}`, `${dev}/init`);
  symlinkSync('/proc/self/fd/0', `${dev}/stdin`);
  symlinkSync('/proc/self/fd/1', `${dev}/stdout`);
  symlinkSync('/proc/self/fd/2', `${dev}/stderr`);

  // A fresh sysfs shows the container's network namespace; read-only as Docker mounts it.
  const sys = mountpoint(root, '/sys');
  if ((sec?.userns !== undefined || inUserNamespace()) && req.network === 'host') {
    // sysfs may only be mounted by the user namespace owning the network namespace (sysfs(5)); in
    // the host's network namespace a read-only bind of the host's /sys is what runc does too.
    mount('/sys', sys, null, MS.BIND | MS.REC);
    mount(null, sys, null, MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  } else {
    mount('sysfs', sys, 'sysfs', MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  }

  for (const m of req.mounts ?? []) mountExtra(root, m.type === 'tmpfs' && context.length > 0 ? { ...m, options: [...m.options, ...context] } : m);

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
 * A --device: the host's node bound onto an empty file in the container's /dev (a tmpfs of this
 * run, so no path of the image is involved), as the default devices are. A bind works wherever
 * the helper runs (mknod is refused in a user namespace); the device cgroup's rule, written by
 * tsbuild from the same DeviceNode, says what the command may do with it. The node is checked to
 * still be the device tsbuild resolved.
 */
function bindDevice(dev: string, d: DeviceNode): void {
  const target = posix.join(dev, d.containerPath.slice('/dev/'.length));
  try {
    const st = statSync(d.hostPath);
    if (!(d.type === 'c' ? st.isCharacterDevice() : st.isBlockDevice()) || major(st.rdev) !== d.major || minor(st.rdev) !== d.minor) {
      throw new Error(`${d.hostPath} is no longer device ${d.type} ${d.major}:${d.minor}`);
    }
    mkdirSync(posix.dirname(target), { recursive: true });
    if (!existsSync(target)) writeFileSync(target, '', { mode: 0o600 });
    mount(d.hostPath, target, null, MS.BIND);
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot add device ${d.hostPath} at ${d.containerPath}: ${(e as Error).message}`);
  }
}

/**
 * A RUN --mount: a bind of a host file or directory, or a tmpfs, made by descriptor at both ends
 * (as runc does since CVE-2021-30465). The source is opened inside its root by the kernel
 * (`sourcePath` resolved in `source` with RESOLVE_IN_ROOT: a symlink there, even as the last
 * component, never leads out of that root), the mountpoint is made inside the rootfs through
 * descriptors, and mount(2) gets /proc/self/fd links of both, so no path string that a symlink
 * could redirect is ever passed to the kernel. A file is bound onto an empty file (a bind needs a
 * mountpoint of the same kind as its source, mount(2) ENOTDIR).
 */
function mountExtra(root: string, m: ExtraMount): void {
  const what = m.type === 'bind' ? `${m.source!}${m.sourcePath !== undefined ? `:${m.sourcePath}` : ''}` : 'tmpfs';
  const fail = (e: unknown): never => {
    if (e instanceof HelperFailure) throw e;
    throw new HelperFailure('FAILED_PRECONDITION', `cannot mount ${what} at ${m.destination}: ${(e as Error).message}`);
  };
  let src: number | undefined;
  try {
    // A source tsbuild made (a cache directory, a secret's file, a copy) is opened as it is, never
    // through a final symlink; a source named by the Dockerfile is resolved inside its root.
    if (m.type === 'bind') src = m.sourcePath === undefined ? openSync(m.source!, O_PATH | constants.O_NOFOLLOW) : openInRoot(m.source!, m.sourcePath);
    const st = src !== undefined ? fstatSync(src) : undefined;
    if (st?.isSymbolicLink()) throw new HelperFailure('FAILED_PRECONDITION', `cannot mount ${what} at ${m.destination}: the source is a symbolic link`);
    const file = st !== undefined && !st.isDirectory();
    const dest = resolveInRoot(root, m.destination);
    const { flags, data } = mountCall({ type: m.type, source: what, options: m.options });
    withFd(mountpointFd(root, dest, file), (at) => {
      if (src !== undefined) mount(fdLink(src), fdLink(at), null, MS.BIND | MS.REC);
      else mount('tmpfs', fdLink(at), 'tmpfs', flags, data.length > 0 ? data : null);
    });
    // A read-only (nosuid, …) bind needs a second call on the new mount, reached by a fresh lookup
    // (the descriptor above still names the directory underneath it): mount(2), "Creating a bind mount".
    const extra = flags & ~(MS.BIND | MS.REC);
    if (src !== undefined && extra !== 0) withFd(openInRoot(root, dest, { followFinal: false }), (at) => mount(null, fdLink(at), null, MS.REMOUNT | MS.BIND | extra));
  } catch (e) {
    fail(e);
  } finally {
    if (src !== undefined) closeSync(src);
  }
}

/**
 * The host path of a mountpoint inside the rootfs, created if missing. An image's symlink in its
 * place is resolved inside the rootfs, so a crafted image cannot make us mount over a host path;
 * the directories are made one at a time through descriptors (mkdirAllInRoot), so a link into
 * /proc, where mkdir answers ENOENT under an existing parent, fails at once instead of looping.
 */
function mountpoint(root: string, path: string): string {
  const inRoot = resolveInRoot(root, path);
  try {
    closeSync(mkdirAllInRoot(root, inRoot));
  } catch (e) {
    throw new HelperFailure('FAILED_PRECONDITION', `cannot create mountpoint ${path} in the rootfs (read-only?): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return hostPath(root, inRoot);
}
