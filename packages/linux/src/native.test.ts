import { closeSync, lstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from './ffi.js';
import { lchown, mknod, S_IFIFO } from './nodes.js';
import { LOCK_EX, LOCK_NB, LOCK_UN, flock, flockSync } from './process.js';
import { getXattr, listXattrs, removeXattr, setXattr } from './xattr.js';
import { lutimens } from './file-times.js';
import { umount } from './mount.js';

/** The addon (src/native.c) through the package's wrappers: results, -errno as node-style errors, bad arguments. */
describe('the libc addon', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tsbuild-native-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('turns -errno into an error shaped like node\'s: code, errno, syscall and path', () => {
    const missing = path.join(dir, 'no', 'such');
    let err: NodeJS.ErrnoException | undefined;
    try {
      lchown(missing, 0, 0);
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'lchown', path: missing, message: `lchown ${missing}: ENOENT` });
    expect(() => umount(dir)).toThrow(/^umount2 .*: EINVAL$/);
  });

  it('makes nodes, sets nanosecond times and xattrs, and reads them back', () => {
    const fifo = path.join(dir, 'fifo');
    mknod(fifo, S_IFIFO | 0o640);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    const file = path.join(dir, 'file');
    writeFileSync(file, 'x');
    lutimens(file, { sec: 1_700_000_000, nsec: 123_456_789 });
    expect(lstatSync(file, { bigint: true }).mtimeNs).toBe(1_700_000_000_123_456_789n);
    setXattr(file, 'user.tsbuild', 'value');
    expect(listXattrs(file)).toContain('user.tsbuild');
    expect(getXattr(file, 'user.tsbuild')?.toString()).toBe('value');
    removeXattr(file, 'user.tsbuild');
    expect(getXattr(file, 'user.tsbuild')).toBeUndefined();
  });

  it('takes a lock on the event loop and off it, and says when another holder has it', async () => {
    const file = path.join(dir, 'lock');
    writeFileSync(file, '');
    const a = openSync(file, 'r');
    const b = openSync(file, 'r');
    try {
      await flock(a, LOCK_EX);
      expect(flockSync(b, LOCK_EX | LOCK_NB)).toBe(false);
      await flock(a, LOCK_UN);
      expect(flockSync(b, LOCK_EX | LOCK_NB)).toBe(true);
    } finally {
      closeSync(a);
      closeSync(b);
    }
  });

  it('refuses a string with a NUL byte instead of passing a shorter one to the kernel', () => {
    expect(() => native().chroot('/tmp\0/x')).toThrow(new TypeError('a string with a NUL byte'));
    expect(() => native().flock('3' as unknown as number, 0)).toThrow(TypeError);
  });
});
