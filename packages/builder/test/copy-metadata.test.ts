import { execFileSync } from 'node:child_process';
import { type Stats, promises as fsp } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getXattr, listXattrs, setXattr } from '@tsbuild/linux';
import { END_OF_ARCHIVE, type TarHeader, encodeHeader, padding } from '@tsbuild/snapshotter';
import { saveArchive } from '@tsbuild/store';
import { build } from '../src/index.js';
import { type Harness, openHarness } from './conformance/harness.js';

/**
 * Metadata COPY/ADD keep, as BuildKit's copy (fsutil) and buildah do (issue 15, point 3):
 * extended attributes of context files, of entries an ADD archive records and of COPY --from
 * sources; hard links among the files of one COPY; the mtimes of symlinks. Checked in the image
 * (its layers unpacked by umoci), once through the direct upperdir writer (layers on) and once
 * through the helper on the mounted rootfs (layers off).
 */
let h: Harness;
let n = 0;

beforeAll(async () => {
  h = await openHarness('copy-metadata');
}, 120_000);

afterAll(async () => {
  await h.close();
});

/** A capability set (VFS_CAP_REVISION_2, cap_net_bind_service permitted): binary, with NULs. */
const CAP = Buffer.from('0100000200040000000000000000000000000000', 'hex');
const OLD = 1_000_000_000; // 2001-09-09

/** Builds the context `prepare` writes (xattrs and links need more than harness.buildIt writes); returns the unpacked rootfs. */
async function buildCtx(prepare: (dir: string) => Promise<void>, layers: boolean): Promise<string> {
  const dir = path.join(h.tmp, `meta-ctx-${n++}`);
  await fsp.mkdir(dir, { recursive: true });
  await prepare(dir);
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const r = await build({ store: h.store, snapshotter: h.snapshotter, context: dir, stdout: quiet, stderr: quiet, layers });
  const out = path.join(h.tmp, `meta-out-${n++}`);
  await saveArchive(h.store, [{ descriptor: r.manifest }], `${out}.tar`, 'oci-archive');
  execFileSync('skopeo', ['copy', '-q', `oci-archive:${out}.tar`, `oci:${out}-oci:x`]);
  execFileSync('umoci', ['unpack', '--image', `${out}-oci:x`, out]);
  return path.join(out, 'rootfs');
}

function xattrsOf(p: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of listXattrs(p).sort()) out[name] = getXattr(p, name)!.toString('hex');
  return out;
}

function tarEntry(h: Partial<TarHeader> & { name: string; type: TarHeader['type'] }, body = ''): Buffer {
  const b = Buffer.from(body);
  const header: TarHeader = { mode: h.type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: b.length, mtime: OLD, linkname: '', devmajor: 0, devminor: 0, xattrs: new Map(), ...h };
  return Buffer.concat([encodeHeader(header), b, Buffer.alloc(padding(b.length))]);
}

const sameInode = (a: Stats, b: Stats) => a.ino === b.ino && a.nlink === 2 && b.nlink === 2;

for (const [how, layers] of [
  ['direct write into the upperdir', true],
  ['helper on the mounted rootfs', false],
] as const) {
  describe(`COPY metadata (${how})`, () => {
    it('keeps xattrs, hard links and symlink mtimes of context files; never overlayfs own xattrs', async () => {
      const root = await buildCtx(async (dir) => {
        await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY tree /t/\nCOPY tree/cap /single\n');
        const t = path.join(dir, 'tree');
        await fsp.mkdir(path.join(t, 'sub'), { recursive: true });
        await fsp.writeFile(path.join(t, 'cap'), 'bin\n');
        setXattr(path.join(t, 'cap'), 'security.capability', CAP);
        setXattr(path.join(t, 'cap'), 'user.note', 'kept');
        setXattr(path.join(t, 'sub'), 'user.dir', 'd');
        await fsp.writeFile(path.join(t, 'sub', 'a'), 'one inode\n');
        await fsp.link(path.join(t, 'sub', 'a'), path.join(t, 'b'));
        setXattr(path.join(t, 'b'), 'user.linked', 'y');
        await fsp.writeFile(path.join(t, 'plain'), 'p\n');
        setXattr(path.join(t, 'plain'), 'trusted.overlay.opaque', 'y');
        await fsp.symlink('plain', path.join(t, 'sl'));
        await fsp.lutimes(path.join(t, 'sl'), OLD, OLD);
      }, layers);
      expect(xattrsOf(path.join(root, 't/cap'))).toEqual({ 'security.capability': CAP.toString('hex'), 'user.note': Buffer.from('kept').toString('hex') });
      expect(xattrsOf(path.join(root, 'single'))).toEqual(xattrsOf(path.join(root, 't/cap')));
      expect(xattrsOf(path.join(root, 't/sub'))).toEqual({ 'user.dir': Buffer.from('d').toString('hex') });
      expect(xattrsOf(path.join(root, 't/plain'))).toEqual({});
      expect(sameInode(await fsp.lstat(path.join(root, 't/b')), await fsp.lstat(path.join(root, 't/sub/a')))).toBe(true);
      expect(xattrsOf(path.join(root, 't/sub/a'))).toEqual({ 'user.linked': Buffer.from('y').toString('hex') });
      expect((await fsp.lstat(path.join(root, 't/sl'))).mtimeMs).toBe(OLD * 1000);
    }, 120_000);

    it('keeps the xattrs and hard links an ADD archive records, and COPY --from keeps them again', async () => {
      const archive = Buffer.concat([
        tarEntry({ name: 'top/', type: 'dir', xattrs: new Map([['user.top', Buffer.from('t')]]) }),
        tarEntry({ name: 'top/f', type: 'file', xattrs: new Map([['security.capability', CAP], ['user.f', Buffer.from('f')]]) }, 'payload\n'),
        tarEntry({ name: 'top/g', type: 'link', linkname: 'top/f' }),
        tarEntry({ name: 'top/sl', type: 'symlink', linkname: 'f' }),
        END_OF_ARCHIVE,
      ]);
      const root = await buildCtx(async (dir) => {
        await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox AS a\nADD a.tar /x/\nFROM busybox\nCOPY --from=a /x/top /y/\nADD a.tar /z/\n');
        await fsp.writeFile(path.join(dir, 'a.tar'), archive);
      }, layers);
      for (const d of ['y', 'z/top']) {
        expect(xattrsOf(path.join(root, d, 'f'))).toEqual({ 'security.capability': CAP.toString('hex'), 'user.f': Buffer.from('f').toString('hex') });
        expect(sameInode(await fsp.lstat(path.join(root, d, 'f')), await fsp.lstat(path.join(root, d, 'g')))).toBe(true);
        expect((await fsp.lstat(path.join(root, d, 'sl'))).mtimeMs).toBe(OLD * 1000);
      }
      expect(xattrsOf(path.join(root, 'z/top'))).toEqual({ 'user.top': Buffer.from('t').toString('hex') });
    }, 120_000);

    it('COPY --from keeps the xattrs of a directory it copies and the mtime of a symlink in it', async () => {
      const archive = Buffer.concat([
        tarEntry({ name: 'd/', type: 'dir' }),
        tarEntry({ name: 'd/sub/', type: 'dir', xattrs: new Map([['user.d', Buffer.from('dir')]]) }),
        tarEntry({ name: 'd/sl', type: 'symlink', linkname: 'nowhere' }),
        END_OF_ARCHIVE,
      ]);
      const root = await buildCtx(async (dir) => {
        await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox AS a\nADD a.tar /\nFROM busybox\nCOPY --from=a /d /d\n');
        await fsp.writeFile(path.join(dir, 'a.tar'), archive);
      }, layers);
      expect(xattrsOf(path.join(root, 'd/sub'))).toEqual({ 'user.d': Buffer.from('dir').toString('hex') });
      expect((await fsp.lstat(path.join(root, 'd/sl'))).mtimeMs).toBe(OLD * 1000);
    }, 120_000);
  });
}
