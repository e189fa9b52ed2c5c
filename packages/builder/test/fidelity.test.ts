// Fidelity against the reference: the layer tsbuild commits for a RUN step must hold the same
// entries as the one `buildah bud --layers` commits for the same step, from the same base image.
// Both tools build one Dockerfile: a first RUN prepares /data in the base, then one RUN per case,
// so that each case is one layer (with --layers, buildah commits every RUN as its own layer too).
import { createHash } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import type { ImageManifest } from '@tsbuild/oci';
import { Store, saveArchive } from '@tsbuild/store';
import { OverlaySnapshotter, decompressed } from '@tsbuild/snapshotter';
import { build, importRootfs } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

/**
 * The base for the cases: files and directories each case then changes. This RUN is itself
 * compared (as the layer of new files and directories), after the buildah artefacts below.
 */
const PREPARE = [
  'mkdir -p /data/deldir/sub /data/repdir/sub /data/repown /data/rendir/sub /data/cdir',
  'echo mod > /data/mod',
  'echo chmod > /data/chmodme',
  'echo chown > /data/chownme',
  'echo del > /data/delme',
  'echo x > /data/deldir/x && echo y > /data/deldir/sub/y',
  'echo old > /data/repdir/old && echo old2 > /data/repdir/sub/old2 && echo o > /data/repown/o',
  'echo ren > /data/renfrom',
  'echo r > /data/rendir/r && echo s > /data/rendir/sub/s',
  'echo link > /data/linksrc',
  'echo typ > /data/typechange',
].join(' && ');

/** One RUN per case, each its own layer; each touches only its own files, so they do not interfere. */
const CASES: { name: string; run: string }[] = [
  { name: 'add a file and a directory', run: 'echo added > /data/added && mkdir /data/newdir && echo n > /data/newdir/f' },
  { name: 'modify a file', run: 'echo more >> /data/mod' },
  { name: 'chmod a file (setuid, setgid, sticky)', run: 'chmod 7751 /data/chmodme' },
  { name: 'chown a file', run: 'chown 1000:10 /data/chownme' },
  { name: 'chmod and chown a directory (copied up without its children)', run: 'chmod 700 /data/cdir && chown 1000:10 /data/cdir' },
  { name: 'delete a file', run: 'rm /data/delme' },
  { name: 'delete a directory', run: 'rm -r /data/deldir' },
  { name: 'replace a directory (opaque)', run: 'rm -r /data/repdir && mkdir /data/repdir && echo new > /data/repdir/new' },
  { name: 'replace a directory by one of another owner and mode (setgid)', run: 'rm -r /data/repown && mkdir /data/repown && chown 1000:10 /data/repown && chmod 2750 /data/repown' },
  { name: 'rename a file', run: 'mv /data/renfrom /data/rento' },
  // Without overlayfs redirect_dir (tsbuild mounts with redirect_dir=off; buildah's layer shows the
  // same), rename(2) of a lower directory fails with EXDEV and mv copies the tree, then deletes
  // the original: a whiteout plus the whole new directory.
  { name: 'rename a directory', run: 'mv /data/rendir /data/rendir2' },
  { name: 'hardlink to a base file (copied up, then linked)', run: 'ln /data/linksrc /data/hl' },
  { name: 'hardlink between new files', run: 'echo h > /data/h1 && ln /data/h1 /data/h2' },
  { name: 'symlink (relative and absolute)', run: 'ln -s linksrc /data/sym && ln -s /data/linksrc /data/abssym' },
  { name: 'mkfifo', run: 'mkfifo -m 640 /data/fifo' },
  { name: 'replace a file by a directory', run: 'rm /data/typechange && mkdir /data/typechange && echo t > /data/typechange/t' },
];

const DOCKERFILE = ['FROM busybox', `RUN ${PREPARE}`, ...CASES.map((c) => `RUN ${c.run}`), ''].join('\n');

/** Everything compared of one tar entry: the whole header but its mtime, and the content's sha256. */
interface Entry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  uname: string;
  gname: string;
  sha256?: string;
  linkname?: string;
  dev?: string;
  /** pax records other than path/linkpath (tar-stream folds those into name/linkname), e.g. SCHILY.xattr.*. */
  pax?: Record<string, string>;
}

/**
 * The entries of a layer tar, in tar order. Normalisations, all intentional:
 * - paths lose a leading './' and a trailing '/' (writers differ in both; layer paths are
 *   relative either way), so 'data/' and './data' are one entry;
 * - mode is the permission bits with setuid/setgid/sticky (mode & 0o7777), as octal text:
 *   buildah (Go's archive/tar) also writes the S_IFMT type bits into the ustar mode field
 *   (040755 for a directory), tsbuild writes only 0755; the typeflag carries the type for both;
 * - mtimes are not compared: each tool ran the step at its own time;
 * - content is compared by sha256 of the data; fifo/char/block entries by devmajor:devminor.
 */
async function entries(layerTar: Readable): Promise<Entry[]> {
  const out: Entry[] = [];
  const extract = tar.extract();
  extract.on('entry', (h, stream, next) => {
    const hash = createHash('sha256');
    stream.on('data', (c) => hash.update(c as Buffer));
    stream.on('end', () => {
      const e: Entry = {
        path: h.name.replace(/^\.\//, '').replace(/\/$/, ''),
        type: h.type ?? 'file',
        mode: ((h.mode ?? 0) & 0o7777).toString(8).padStart(4, '0'),
        uid: h.uid ?? 0,
        gid: h.gid ?? 0,
        size: h.size ?? 0,
        uname: h.uname ?? '',
        gname: h.gname ?? '',
      };
      if (e.type === 'file') e.sha256 = hash.digest('hex');
      if (h.linkname) e.linkname = h.linkname.replace(/^\.\//, '');
      if (['fifo', 'character-device', 'block-device'].includes(e.type)) e.dev = `${h.devmajor ?? 0}:${h.devminor ?? 0}`;
      const pax = Object.entries(h.pax ?? {}).filter(([k]) => k !== 'path' && k !== 'linkpath');
      if (pax.length > 0) e.pax = Object.fromEntries(pax.sort());
      out.push(e);
      next();
    });
    stream.on('error', next);
  });
  await pipeline(layerTar, extract);
  return out;
}

/**
 * buildah's RUN leaves traces of its own set-up in every layer; they are dropped from its side
 * (only when they have exactly this shape, so anything else still shows as a difference):
 * - `run`, a directory: buildah bind-mounts /run/.containerenv, which copies /run up into the
 *   upperdir; the mount point file is removed afterwards, the copied-up directory stays;
 * - `etc` and the empty files `etc/hostname`, `etc/hosts`, `etc/resolv.conf` in the first RUN's
 *   layer: the base lacks them, so buildah creates them as bind-mount targets and commits them.
 * tsbuild mounts those files without leaving anything in the rootfs. No case touches /etc or /run.
 */
function withoutBuildahArtefacts(layer: Entry[], base: Entry[]): Entry[] {
  const sameAsBase = (e: Entry) => base.some((b) => b.path === e.path && b.type === e.type && b.mode === e.mode && b.uid === e.uid && b.gid === e.gid);
  return layer.filter((e) => {
    if ((e.path === 'run' || e.path === 'etc') && e.type === 'directory' && sameAsBase(e)) return false;
    if (['etc/hostname', 'etc/hosts', 'etc/resolv.conf'].includes(e.path) && e.type === 'file' && e.size === 0) return false;
    return true;
  });
}

const show = (e: Entry): string => JSON.stringify(e);
const sorted = (xs: Entry[]): string[] => xs.map(show).sort();

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-fidelity-'));
const bRoot = path.join(tmp, 'buildah-root');
const bRunroot = path.join(tmp, 'buildah-runroot');

/** Runs a tool asynchronously, so that buildah's build and tsbuild's run side by side. */
async function sh(cmd: string, args: string[]): Promise<void> {
  await promisify(execFile)(cmd, args, { maxBuffer: 64 << 20 }).catch((e: Error & { stderr?: string }) => {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr ?? e.message}`);
  });
}
const buildah = (...args: string[]): Promise<void> => sh('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', ...args]);

let ours: Entry[][] = [];
let theirs: Entry[][] = [];

beforeAll(async () => {
  const store = await Store.open(path.join(tmp, 'store'));
  const snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  const context = path.join(tmp, 'context');
  await fsp.mkdir(context);
  await fsp.writeFile(path.join(context, 'Dockerfile'), DOCKERFILE);

  // buildah gets the very same base image (same layer bytes) through an OCI archive.
  const archive = path.join(tmp, 'busybox.tar');
  await saveArchive(store, [{ name: 'busybox', descriptor: (await store.resolve('busybox')).descriptor }], archive, 'oci-archive');
  await sh('skopeo', ['copy', '-q', `oci-archive:${archive}`, `containers-storage:[overlay@${bRoot}+${bRunroot}]docker.io/library/busybox:latest`]);

  const [, ref] = await Promise.all([
    build({ store, snapshotter, context, tags: ['fidelity'] }),
    (async () => {
      await buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--pull=never', '-q', '-t', 'fidelity', context);
      const layout = path.join(tmp, 'buildah-oci');
      await buildah('push', '-q', 'localhost/fidelity:latest', `oci:${layout}:fidelity`);
      return layout;
    })(),
  ]);

  const ourLayers = await store.image((await store.resolve('fidelity')).descriptor).layers();
  ours = await Promise.all(ourLayers.map(async (l) => entries(await l.uncompressed())));

  const index = JSON.parse(await fsp.readFile(path.join(ref, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const blob = (d: string): string => path.join(ref, 'blobs', ...d.split(':'));
  const manifest = JSON.parse(await fsp.readFile(blob(index.manifests[0]!.digest), 'utf8')) as ImageManifest;
  theirs = await Promise.all(manifest.layers.map((l) => entries(Readable.from(decompressed(createReadStream(blob(l.digest)))))));
}, 120_000);

afterAll(async () => {
  spawnSync('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', 'rm', '--all'], { stdio: 'ignore' });
  // buildah leaves its overlay mounts (and the storage's own bind mount of ROOT/overlay) behind.
  const mounts = (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
  for (const m of mounts.filter((p) => p.startsWith(tmp + '/')).sort((a, b) => b.length - a.length)) {
    spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** Layer i of both images (0 the base, 1 the preparing RUN, 2 + n case n), buildah's without its artefacts. */
function layerPair(i: number): { ours: Entry[]; theirs: Entry[] } {
  return { ours: ours[i]!, theirs: withoutBuildahArtefacts(theirs[i]!, theirs[0]!) };
}

describe('RUN layers match buildah bud --layers entry for entry', () => {
  it('both images have the base, the preparing layer and one layer per case; the base layer is shared', () => {
    expect(ours).toHaveLength(2 + CASES.length);
    expect(theirs).toHaveLength(2 + CASES.length);
    expect(ours[0]!.map(show)).toEqual(theirs[0]!.map(show));
  });

  it('preparing RUN: new directories and files', () => {
    const { ours: a, theirs: b } = layerPair(1);
    expect(sorted(a)).toEqual(sorted(b));
  });

  it.each(CASES.map((c, i) => [c.name, i] as const))('%s', (_name, i) => {
    const { ours: a, theirs: b } = layerPair(2 + i);
    expect(sorted(a)).toEqual(sorted(b));
  });

  it('opaque markers carry their directory\'s permission bits, as buildah writes them', () => {
    const markers = (layers: Entry[][]) => layers.flatMap((l) => l.filter((e) => e.path.endsWith('/.wh..wh..opq')).map((m) => ({ path: m.path, mode: m.mode })));
    expect(markers(ours)).toEqual(markers(theirs));
    expect(markers(ours).map((m) => m.mode)).toEqual(['0755', '0750', '0755']);
  });

  it('entries come in the same order as in buildah\'s layers', () => {
    for (let i = 1; i < ours.length; i++) {
      const { ours: a, theirs: b } = layerPair(i);
      expect(a.map((e) => e.path), `layer ${i}`).toEqual(b.map((e) => e.path));
    }
  });
});
