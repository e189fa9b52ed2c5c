import { existsSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelledError, NotFoundError } from '@tsbuild/oci';
import { copyInto, run, type CopyOp } from '../src/index.js';
import { Collector, makeBusyboxFixture, mountsMentioning, type Fixture } from './busybox-rootfs.js';

let fx: Fixture;
let ctx: string; // a build context on the host
const escapeName = `tsbuild-escape-${process.pid}-${Date.now()}`;

beforeAll(() => {
  fx = makeBusyboxFixture();
  // Symlinks in the image that would point out of the rootfs if resolved on the host.
  symlinkSync(`/../../../tmp/${escapeName}`, join(fx.lower, 'escape-abs'));
  symlinkSync(`../../../../../tmp/${escapeName}`, join(fx.lower, 'escape-rel'));
  mkdirSync(join(fx.lower, 'opt/app'), { recursive: true });
  symlinkSync('/opt/app', join(fx.lower, 'app'));
  symlinkSync(`/tmp/${escapeName}-file`, join(fx.lower, 'etc/hostfile'));

  ctx = mkdtempSync(join(tmpdir(), 'tsbuild-ctx-'));
  writeFileSync(join(ctx, 'a.txt'), 'file a\n');
  chmodSync(join(ctx, 'a.txt'), 0o640);
  utimesSync(join(ctx, 'a.txt'), 1_000_000_000, 1_000_000_000);
  writeFileSync(join(ctx, 'b.sh'), '#!/bin/sh\necho b\n');
  chmodSync(join(ctx, 'b.sh'), 0o755);
  mkdirSync(join(ctx, 'dir/sub'), { recursive: true });
  writeFileSync(join(ctx, 'dir/top'), 'top\n');
  writeFileSync(join(ctx, 'dir/sub/deep'), 'deep\n');
  chmodSync(join(ctx, 'dir/sub'), 0o750);
  symlinkSync('../top', join(ctx, 'dir/sub/link'));
  symlinkSync('/etc/passwd', join(ctx, 'abs-link'));
  mkdirSync(join(ctx, 'etcdir'));
  writeFileSync(join(ctx, 'etcdir/hostfile'), 'replaced\n');
});
afterAll(() => {
  fx.cleanup();
  rmSync(ctx, { recursive: true, force: true });
  rmSync(`/tmp/${escapeName}`, { recursive: true, force: true });
  rmSync(`/tmp/${escapeName}-file`, { force: true });
});

async function copy(ops: CopyOp[]): Promise<{ upper: string; scratchDir: string; mounts: ReturnType<Fixture['overlay']>['mounts'] }> {
  const { upper, mounts } = fx.overlay();
  const scratchDir = fx.scratch();
  await copyInto(mounts, scratchDir, ops);
  expect(mountsMentioning(upper)).toEqual([]);
  expect(mountsMentioning(scratchDir)).toEqual([]);
  expect(existsSync(scratchDir)).toBe(false);
  return { upper, scratchDir, mounts };
}

const own = (p: string): string => {
  const s = lstatSync(p);
  return `${s.uid}:${s.gid}`;
};
const perm = (p: string): number => lstatSync(p).mode & 0o7777;

describe('copyInto', () => {
  it('copies a file to a new name, keeping mode and mtime, owned uid:gid, creating parents 0755 uid:gid', async () => {
    const { upper } = await copy([{ op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/srv/data/renamed.txt', uid: 1000, gid: 1001 }]);
    const f = join(upper, 'srv/data/renamed.txt');
    expect(readFileSync(f, 'utf8')).toBe('file a\n');
    expect(own(f)).toBe('1000:1001');
    expect(perm(f)).toBe(0o640);
    expect(statSync(f).mtimeMs).toBe(1_000_000_000_000);
    expect(own(join(upper, 'srv'))).toBe('1000:1001');
    expect(perm(join(upper, 'srv/data'))).toBe(0o755);
  });

  it('copies the contents of a directory, recursively, with symlinks kept as symlinks', async () => {
    const { upper } = await copy([{ op: 'copy', sources: [join(ctx, 'dir')], dest: '/dst', uid: 0, gid: 0 }]);
    expect(readFileSync(join(upper, 'dst/top'), 'utf8')).toBe('top\n');
    expect(readFileSync(join(upper, 'dst/sub/deep'), 'utf8')).toBe('deep\n');
    expect(existsSync(join(upper, 'dst/dir'))).toBe(false);
    expect(readlinkSync(join(upper, 'dst/sub/link'))).toBe('../top');
    expect(perm(join(upper, 'dst/sub'))).toBe(0o750);
  });

  it('puts a file into dest/ when dest ends with a slash, when there are several sources, or when dest is a directory', async () => {
    const { upper } = await copy([
      { op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/slash/', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'a.txt'), join(ctx, 'b.sh'), join(ctx, 'abs-link')], dest: '/many', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'b.sh')], dest: '/etc', uid: 0, gid: 0 },
    ]);
    expect(readFileSync(join(upper, 'slash/a.txt'), 'utf8')).toBe('file a\n');
    expect(readFileSync(join(upper, 'many/a.txt'), 'utf8')).toBe('file a\n');
    expect(perm(join(upper, 'many/b.sh'))).toBe(0o755);
    expect(lstatSync(join(upper, 'many/abs-link')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(upper, 'many/abs-link'))).toBe('/etc/passwd');
    expect(readFileSync(join(upper, 'etc/b.sh'), 'utf8')).toContain('echo b');
  });

  it('applies chown and chmod (--chown, --chmod) to every copied entry, symlinks owned too', async () => {
    const { upper } = await copy([{ op: 'copy', sources: [join(ctx, 'dir')], dest: '/chm', uid: 123, gid: 456, mode: 0o700 }]);
    for (const p of ['chm', 'chm/top', 'chm/sub', 'chm/sub/deep']) {
      expect(own(join(upper, p))).toBe('123:456');
      expect(perm(join(upper, p))).toBe(0o700);
    }
    expect(own(join(upper, 'chm/sub/link'))).toBe('123:456');
  });

  it('keeps the owners of a source marked in keepOwners (COPY --from, ADD archives), others get uid:gid', async () => {
    const owned = mkdtempSync(join(tmpdir(), 'tsbuild-owned-'));
    try {
      mkdirSync(join(owned, 'tree/sub'), { recursive: true });
      writeFileSync(join(owned, 'tree/sub/f'), 'f\n');
      symlinkSync('f', join(owned, 'tree/sub/l'));
      writeFileSync(join(owned, 'single'), 's\n');
      lchownSync(join(owned, 'tree/sub'), 7, 8);
      lchownSync(join(owned, 'tree/sub/f'), 123, 456);
      lchownSync(join(owned, 'tree/sub/l'), 11, 12);
      lchownSync(join(owned, 'single'), 5, 6);
      const { upper } = await copy([{ op: 'copy', sources: [join(owned, 'tree'), join(owned, 'single'), join(ctx, 'a.txt')], dest: '/kept/', uid: 1, gid: 2, keepOwners: [true, true, false] }]);
      expect(['kept', 'kept/sub', 'kept/sub/f', 'kept/sub/l', 'kept/single', 'kept/a.txt'].map((p) => own(join(upper, p)))).toEqual(['1:2', '7:8', '123:456', '11:12', '5:6', '1:2']);
    } finally {
      rmSync(owned, { recursive: true, force: true });
    }
  });

  it('rejects keepOwners that does not match the sources', async () => {
    const { mounts } = fx.overlay();
    await expect(copyInto(mounts, fx.scratch(), [{ op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/x', uid: 0, gid: 0, keepOwners: [true, false] }])).rejects.toThrow(/keepOwners has 2 entries for 1 sources/);
  });

  it('replaces an existing file, and a symlink in the way is replaced, not written through', async () => {
    const { upper } = await copy([
      { op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/marker', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/etc/', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'abs-link')], dest: '/etc/passwd', uid: 0, gid: 0 },
      // /etc/hostfile is a symlink to /tmp/<escape>-file: a directory merge replaces it
      { op: 'copy', sources: [join(ctx, 'etcdir')], dest: '/etc', uid: 0, gid: 0 },
    ]);
    expect(lstatSync(join(upper, 'etc/hostfile')).isFile()).toBe(true);
    expect(readFileSync(join(upper, 'etc/hostfile'), 'utf8')).toBe('replaced\n');
    expect(existsSync(join(upper, 'tmp', `${escapeName}-file`))).toBe(false);
    expect(existsSync(`/tmp/${escapeName}-file`)).toBe(false);
    expect(readFileSync(join(upper, 'marker'), 'utf8')).toBe('file a\n');
    expect(readFileSync(join(fx.lower, 'marker'), 'utf8')).toBe('this is the rootfs\n');
    expect(readlinkSync(join(upper, 'etc/passwd'))).toBe('/etc/passwd');
  });

  it('resolves symlinks in the destination inside the rootfs, never on the host', async () => {
    const { upper } = await copy([
      { op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/escape-abs/', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'dir')], dest: '/escape-rel/x/../y', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'b.sh')], dest: '/escape-abs/../../../../tmp/up.sh', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'dir')], dest: '/app', uid: 0, gid: 0 },
      { op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/etc/hostfile', uid: 0, gid: 0 },
    ]);
    expect(existsSync(`/tmp/${escapeName}`)).toBe(false);
    expect(existsSync(`/tmp/${escapeName}-file`)).toBe(false);
    expect(existsSync('/tmp/up.sh')).toBe(false);
    expect(readFileSync(join(upper, 'tmp', escapeName, 'a.txt'), 'utf8')).toBe('file a\n');
    expect(readFileSync(join(upper, 'tmp', escapeName, 'y/sub/deep'), 'utf8')).toBe('deep\n');
    expect(readFileSync(join(upper, 'tmp/up.sh'), 'utf8')).toContain('echo b');
    // /app -> /opt/app: the copy lands in /opt/app and /app stays a symlink
    expect(readFileSync(join(upper, 'opt/app/top'), 'utf8')).toBe('top\n');
    expect(existsSync(join(upper, 'app'))).toBe(false);
    // a final symlink is followed inside the rootfs too
    expect(readFileSync(join(upper, 'tmp', `${escapeName}-file`), 'utf8')).toBe('file a\n');
  });

  it('creates directories like WORKDIR', async () => {
    const { upper } = await copy([{ op: 'mkdir', path: '/w/x/y', uid: 5, gid: 6, mode: 0o711 }, { op: 'mkdir', path: '/app/sub', uid: 0, gid: 0, mode: 0o755 }]);
    expect(perm(join(upper, 'w/x/y'))).toBe(0o711);
    expect(perm(join(upper, 'w/x'))).toBe(0o755);
    expect(own(join(upper, 'w/x/y'))).toBe('5:6');
    expect(statSync(join(upper, 'opt/app/sub')).isDirectory()).toBe(true);
  });

  it('is visible to a later RUN on the same upper layer', async () => {
    const { upper, mounts } = await copy([{ op: 'copy', sources: [join(ctx, 'b.sh')], dest: '/usr/local/bin/', uid: 0, gid: 0 }]);
    const out = new Collector();
    const r = await run({ args: ['b.sh'], env: ['PATH=/usr/local/bin:/bin'], cwd: '/', rootfs: mounts, scratchDir: fx.scratch() }, { stdout: out, stderr: 'inherit' });
    expect(r.exitCode).toBe(0);
    expect(out.text).toBe('b\n');
    expect(existsSync(join(upper, 'usr/local/bin/b.sh'))).toBe(true);
  });

  it('rejects a missing source with NotFoundError naming it, leaving no mount', async () => {
    const { upper, mounts } = fx.overlay();
    const scratchDir = fx.scratch();
    const missing = join(ctx, 'nope');
    const p = copyInto(mounts, scratchDir, [{ op: 'copy', sources: [missing], dest: '/x', uid: 0, gid: 0 }]);
    await expect(p).rejects.toThrow(NotFoundError);
    await expect(p).rejects.toThrow(missing);
    expect(mountsMentioning(upper)).toEqual([]);
    expect(existsSync(scratchDir)).toBe(false);
  });

  it('rejects a destination below a file', async () => {
    const { mounts } = fx.overlay();
    await expect(copyInto(mounts, fx.scratch(), [{ op: 'copy', sources: [join(ctx, 'a.txt')], dest: '/marker/x/', uid: 0, gid: 0 }])).rejects.toThrow(/\/marker/);
  });

  it('rejects with CancelledError on abort', async () => {
    const { mounts } = fx.overlay();
    await expect(copyInto(mounts, fx.scratch(), [], AbortSignal.abort())).rejects.toThrow(CancelledError);
    const ac = new AbortController();
    const p = copyInto(mounts, fx.scratch(), [{ op: 'copy', sources: [ctx], dest: '/big', uid: 0, gid: 0 }], ac.signal);
    ac.abort();
    await expect(p).rejects.toThrow(CancelledError);
  });
});
