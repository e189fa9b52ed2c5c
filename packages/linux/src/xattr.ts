import { check, sys } from './libc.js';

/**
 * Extended attributes of a path, without following a final symlink (l*xattr). Values are raw
 * bytes: security.capability is binary.
 */
export function listXattrs(path: string): string[] {
  const size = check(sys().llistxattr(path, null), 'llistxattr', path);
  if (size === 0) return [];
  const buf = Buffer.alloc(size);
  const n = check(sys().llistxattr(path, buf), 'llistxattr', path);
  return buf.subarray(0, n).toString('utf8').split('\0').filter((s) => s.length > 0);
}

/** The value, or undefined if the attribute is not set (ENODATA). */
export function getXattr(path: string, name: string): Buffer | undefined {
  for (;;) {
    const size = sys().lgetxattr(path, name, null);
    if (size < 0) {
      const e = tryErr(() => check(size, 'lgetxattr', path));
      if (e.code === 'ENODATA' || e.code === 'ENOTSUP') return undefined;
      throw e;
    }
    const buf = Buffer.alloc(size);
    const n = sys().lgetxattr(path, name, buf);
    if (n >= 0) return buf.subarray(0, n);
    const e = tryErr(() => check(n, 'lgetxattr', path));
    if (e.code === 'ERANGE') continue; // grew between the two calls
    if (e.code === 'ENODATA') return undefined;
    throw e;
  }
}

export function setXattr(path: string, name: string, value: Uint8Array | string): void {
  const buf = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value);
  check(sys().lsetxattr(path, name, buf, 0), 'lsetxattr', path);
}

export function removeXattr(path: string, name: string): void {
  check(sys().lremovexattr(path, name), 'lremovexattr', path);
}

function tryErr(f: () => unknown): NodeJS.ErrnoException {
  try {
    f();
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
  throw new Error('expected an error');
}

/**
 * xattrs that describe the host, not the file: overlayfs' own state (trusted.overlay.*, and
 * user.overlay.* under `userxattr`) and the host's SELinux label. A copy never carries them:
 * overlayfs would read a forged opaque/redirect marker, and the layer differ drops them anyway.
 */
export function isHostOnlyXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.') || name === 'security.selinux';
}

/**
 * Copies the xattrs of `from` to `to` (neither followed if a symlink), as BuildKit's copy does
 * (fsutil copyXAttrs): all of them but the host's own; one llistxattr when there are none. An
 * attribute the kernel or filesystem refuses (EPERM/EACCES for trusted.* without
 * CAP_SYS_ADMIN, ENOTSUP on a filesystem without that namespace) is skipped, as BuildKit's
 * XAttrErrorHandler does. Call it after chown: chown(2) clears security.capability.
 */
export function copyXattrs(from: string, to: string): void {
  for (const n of listXattrs(from)) {
    if (isHostOnlyXattr(n)) continue;
    const v = getXattr(from, n);
    if (v === undefined) continue;
    try {
      setXattr(to, n, v);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    }
  }
}
