// Differential suite: each fixture under fixtures/differential/<name>/ is built by
// `buildah bud --layers` (the reference) and by tsbuild from the same busybox base image; the
// flattened filesystems and the configs must be equal, except for the differences listed in
// DIFFERENCES below, each with its reason.
import { createHash } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '@tsbuild/oci';
import { Store, saveArchive } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { getXattr, listXattrs, setXattr } from '@tsbuild/linux';
import { build, importRootfs } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

const FIXTURES = path.resolve(import.meta.dirname, '../../../fixtures/differential');
const NAMES = ['basic', 'copy', 'copy-fidelity', 'copy-metadata', 'args', 'multistage', 'config', 'dockerignore', 'run-mounts', 'user-workdir', 'add-files', 'heredoc'];

/**
 * Metadata git does not keep, made in the fixture's copy of the context before both builds:
 * copy-metadata gets a user.* xattr on a file and on a directory, a file capability
 * (security.capability), two hard-linked files, and old mtimes on a file, a directory and a
 * symlink (set with lutimes, as `touch -h -d` does).
 */
const PREPARE: Record<string, (ctx: string) => Promise<void>> = {
  'copy-metadata': async (ctx) => {
    const meta = path.join(ctx, 'meta');
    setXattr(path.join(meta, 'xattr.txt'), 'user.note', 'kept');
    setXattr(path.join(meta, 'sub'), 'user.dir', 'kept too');
    await sh('setcap', ['cap_net_bind_service=+ep', path.join(meta, 'cap-bin')]);
    await fsp.link(path.join(meta, 'hl-a'), path.join(meta, 'hl-b'));
    await fsp.symlink('xattr.txt', path.join(meta, 'old-link'));
    await fsp.lutimes(path.join(meta, 'old-link'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
    await fsp.utimes(path.join(meta, 'old-file'), new Date('2002-03-04T05:06:07Z'), new Date('2002-03-04T05:06:07Z'));
    await fsp.utimes(path.join(meta, 'sub'), new Date('2003-04-05T06:07:08Z'), new Date('2003-04-05T06:07:08Z'));
  },
};

/**
 * Documented, justified differences:
 * - heredoc: buildah 1.28 has no here-documents (they came with buildah 1.33); it reads the body
 *   lines as instructions and fails. The fixture checks that buildah fails, and tsbuild's result
 *   on its own.
 * - etc/hostname, etc/hosts, etc/resolv.conf (empty files) and the directories etc and run:
 *   buildah's RUN creates them in the rootfs as bind-mount targets and commits them; tsbuild
 *   leaves nothing of its mounts in a layer. They are dropped from buildah's side when they have
 *   exactly that shape, and after a buildah RUN (etc/hostname is there) the mtimes of etc and run
 *   (changed by making those targets) are not compared.
 * - Labels io.buildah.version: buildah adds it to every image.
 * - VOLUME directories: buildah (like docker's classic builder) creates each VOLUME path in the
 *   rootfs; BuildKit does not, and neither does tsbuild (a volume is config, not content). Empty
 *   directories at exactly the config's Volumes are dropped from buildah's side.
 * - RUN --mount targets: buildah 1.28 leaves the directories it created above a mount target
 *   (mnt for /mnt/assets, var/cache for /var/cache/fixture) in the layer; BuildKit leaves no
 *   trace of a mount, and neither does tsbuild. Those empty directories, listed per fixture in
 *   MOUNT_PARENTS, are dropped from buildah's side.
 * - mtimes are compared only where both builders must keep one: an mtime from before the builds
 *   started (the context's files and symlinks, COPY --from sources, the base image) must come
 *   through the same in both; a time either tool gave during its build (RUN output, directories
 *   COPY creates, a directory COPY writes into) shows as "build" on both sides, since each tool ran
 *   its steps at its own time. So keeping an mtime on one side and not on the other is a difference.
 * - xattrs: user.* and security.* must match. trusted.* is left out: buildah's copier and its
 *   layer differ drop the trusted namespace (it needs CAP_SYS_ADMIN in the initial user namespace
 *   to read or write), while BuildKit's fsutil copy and tsbuild keep what the kernel lets them copy.
 * - Hard links are compared as groups of paths sharing an inode (each file with nlink > 1 names the
 *   first path of its group, and has the group's nlink), not as inode numbers.
 */
const MOUNT_PARENTS: Record<string, string[]> = { 'run-mounts': ['mnt', 'var/cache'] };
const BUILDAH_ONLY_FILES = ['etc/hostname', 'etc/hosts', 'etc/resolv.conf'];
const CONFIG_FIELDS = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels', 'StopSignal', 'Healthcheck', 'OnBuild', 'Shell'] as const;
const BUILD_ARGS = { args: ['VERSION=2.5'] };

interface Entry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  sha256?: string;
  link?: string;
  /** The mtime in ns, or "build" when it is not older than the builds (see DIFFERENCES). */
  mtime: string;
  nlink?: number;
  /** The first path (in walk order) of the hard-link group this file belongs to. */
  hardlinkOf?: string;
  xattrs?: Record<string, string>;
}

/** When the builds started: anything older was made before them, by the fixture or the base image. */
let buildStartNs = 0n;

async function flatten(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const groups = new Map<bigint, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const abs = path.join(root, r);
      const st = await fsp.lstat(abs, { bigint: true });
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : 'other';
      const mtime = st.mtimeNs >= buildStartNs ? 'build' : st.mtimeNs.toString();
      const e: Entry = { path: r, type, mode: (st.mode & 0o7777n).toString(8), uid: Number(st.uid), gid: Number(st.gid), mtime };
      if (type === 'file') e.sha256 = createHash('sha256').update(await fsp.readFile(abs)).digest('hex');
      if (type === 'symlink') e.link = await fsp.readlink(abs);
      if (type !== 'dir' && st.nlink > 1n) {
        if (!groups.has(st.ino)) groups.set(st.ino, r);
        e.nlink = Number(st.nlink);
        e.hardlinkOf = groups.get(st.ino);
      }
      const names = listXattrs(abs).filter((n) => !n.startsWith('trusted.')).sort();
      if (names.length > 0) e.xattrs = Object.fromEntries(names.map((n) => [n, getXattr(abs, n)?.toString('base64') ?? '']));
      out.push(e);
      if (type === 'dir') await walk(r);
    }
  };
  await walk('');
  return out;
}

/**
 * Sets every mtime under `dir` to its whole second. buildah writes layers with Go's archive/tar
 * without PAX times, which rounds an mtime to the nearest second; BuildKit (containerd's archive,
 * hdr.ModTime.Truncate(time.Second)) and tsbuild truncate it. With whole seconds in the context
 * both keep the same time, and the comparison is about which mtimes are kept at all.
 */
async function wholeSeconds(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    const p = path.join(dir, name);
    const st = await fsp.lstat(p);
    if (st.isDirectory()) await wholeSeconds(p);
    const t = Math.floor(st.mtimeMs / 1000);
    await fsp.lutimes(p, t, t);
  }
  const t = Math.floor((await fsp.lstat(dir)).mtimeMs / 1000);
  await fsp.utimes(dir, t, t);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-differential-'));
const bRoot = path.join(tmp, 'buildah-root');
const bRunroot = path.join(tmp, 'buildah-runroot');

async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    return (await promisify(execFile)(cmd, args, { maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
  }
}
const buildah = (...args: string[]): Promise<string> => sh('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', ...args]);

interface Result {
  fs: Entry[];
  config: Record<string, unknown>;
}
const ours = new Map<string, Result>();
const theirs = new Map<string, Result | Error>();

async function unpack(ociLayout: string, tag: string, dest: string): Promise<Entry[]> {
  await sh('umoci', ['unpack', '--image', `${ociLayout}:${tag}`, dest]);
  return flatten(path.join(dest, 'rootfs'));
}

beforeAll(async () => {
  // The contexts are copies (cp -a keeps the fixtures' mtimes) that PREPARE adds metadata to.
  await fsp.mkdir(path.join(tmp, 'contexts'));
  for (const name of NAMES) {
    await sh('cp', ['-a', path.join(FIXTURES, name), path.join(tmp, 'contexts', name)]);
    await PREPARE[name]?.(path.join(tmp, 'contexts', name));
    await wholeSeconds(path.join(tmp, 'contexts', name));
  }
  const store = await Store.open(path.join(tmp, 'store'));
  const snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  const archive = path.join(tmp, 'busybox.tar');
  await saveArchive(store, [{ name: 'busybox', descriptor: (await store.resolve('busybox')).descriptor }], archive, 'oci-archive');
  await sh('skopeo', ['copy', '-q', `oci-archive:${archive}`, `containers-storage:[overlay@${bRoot}+${bRunroot}]docker.io/library/busybox:latest`]);
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  // Whole seconds: a layer may carry mtimes truncated to the second.
  buildStartNs = BigInt(Math.floor(Date.now() / 1000)) * 1_000_000_000n;

  const oursAll = (async () => {
    for (const name of NAMES) {
      const r = await build({ store, snapshotter, context: path.join(tmp, 'contexts', name), tags: [`diff-${name}`], buildArgs: name === 'args' ? { VERSION: '2.5' } : {}, stdout: quiet, stderr: quiet });
      const tar = path.join(tmp, `ours-${name}.tar`);
      await saveArchive(store, [{ descriptor: r.manifest }], tar, 'oci-archive');
      await sh('skopeo', ['copy', '-q', `oci-archive:${tar}`, `oci:${tmp}/ours-oci:${name}`]);
      const config = (await store.image(r.manifest).config()) as ImageConfig;
      ours.set(name, { fs: await unpack(`${tmp}/ours-oci`, name, path.join(tmp, `ours-${name}`)), config: (config.config ?? {}) as Record<string, unknown> });
    }
  })();
  const theirsAll = (async () => {
    for (const name of NAMES) {
      try {
        // Docker format: buildah drops HEALTHCHECK, ONBUILD, SHELL and STOPSIGNAL from OCI configs.
        await buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--pull=never', '--format', 'docker', '-q', ...(name === 'args' ? ['--build-arg', BUILD_ARGS.args[0]!] : []), '-t', `diff-${name}`, path.join(tmp, 'contexts', name));
      } catch (e) {
        theirs.set(name, e as Error);
        continue;
      }
      const inspect = JSON.parse(await buildah('inspect', '--type', 'image', `localhost/diff-${name}:latest`)) as { Docker: { config: Record<string, unknown> } };
      await buildah('push', '-q', `localhost/diff-${name}:latest`, `oci:${tmp}/theirs-oci:${name}`);
      theirs.set(name, { fs: await unpack(`${tmp}/theirs-oci`, name, path.join(tmp, `theirs-${name}`)), config: inspect.Docker.config });
    }
  })();
  await Promise.all([oursAll, theirsAll]);
}, 600_000);

afterAll(async () => {
  spawnSync('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', 'rm', '--all'], { stdio: 'ignore' });
  const mounts = (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
  for (const m of mounts.filter((p) => p.startsWith(tmp + '/')).sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** The mtimes a buildah RUN changed by making its bind-mount targets (see DIFFERENCES). */
const RUN_TARGET_DIRS = ['etc', 'run'];

/** Both sides without the mtimes of RUN_TARGET_DIRS when buildah ran a RUN (it left etc/hostname). */
function withoutRunTargetTimes(fs: Entry[], theirs: Entry[]): Entry[] {
  if (!theirs.some((e) => e.path === 'etc/hostname')) return fs;
  return fs.map((e) => (e.type === 'dir' && RUN_TARGET_DIRS.includes(e.path) ? { ...e, mtime: 'not compared' } : e));
}

/** buildah's side without its mount artefacts (see DIFFERENCES). */
function withoutArtefacts(fs: Entry[], volumes: string[], mountParents: string[]): Entry[] {
  return fs.filter((e) => {
    if (e.type === 'dir' && mountParents.includes(e.path) && !fs.some((x) => x.path.startsWith(`${e.path}/`))) return false;
    if (e.type === 'dir' && volumes.includes(`/${e.path}`) && !fs.some((x) => x.path.startsWith(`${e.path}/`))) return false;
    if (BUILDAH_ONLY_FILES.includes(e.path) && e.type === 'file') return e.sha256 !== createHash('sha256').update('').digest('hex');
    return true;
  });
}

function normalisedConfig(c: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of CONFIG_FIELDS) {
    let v = c[k];
    if (k === 'Labels' && v && typeof v === 'object') {
      const l = { ...(v as Record<string, string>) };
      delete l['io.buildah.version'];
      v = Object.keys(l).length > 0 ? l : undefined;
    }
    // Empty and absent mean the same in a config (Go's omitempty on one side, null on the other).
    if (v === null || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0)) v = undefined;
    // Maps (ExposedPorts, Volumes, Labels) compare by content, not key order.
    if (v !== undefined && typeof v === 'object' && !Array.isArray(v)) v = Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => x.localeCompare(y)));
    if (v !== undefined) out[k] = v;
  }
  return out;
}

const compared = NAMES.filter((n) => n !== 'heredoc');

describe('tsbuild and buildah bud --layers build the same images', () => {
  it.each(compared)('%s: same flattened filesystem (path, type, mode, owner, content, link target, kept mtimes, hard-link groups, xattrs)', (name) => {
    const t = theirs.get(name);
    if (t instanceof Error) throw t;
    // One line per entry, so a difference shows as the lines that differ.
    const a = withoutRunTargetTimes(ours.get(name)!.fs, t!.fs).map((e) => JSON.stringify(e)).join('\n');
    const b = withoutRunTargetTimes(withoutArtefacts(t!.fs, Object.keys((t!.config.Volumes as Record<string, unknown> | undefined) ?? {}), MOUNT_PARENTS[name] ?? []), t!.fs).map((e) => JSON.stringify(e)).join('\n');
    expect(a).toBe(b);
  });

  it.each(compared)('%s: same config fields', (name) => {
    const t = theirs.get(name);
    if (t instanceof Error) throw t;
    expect(JSON.stringify(normalisedConfig(ours.get(name)!.config), null, 1)).toBe(JSON.stringify(normalisedConfig(t!.config), null, 1));
  });

  it('heredoc: buildah 1.28 cannot build it (documented difference); tsbuild runs the body', async () => {
    expect(theirs.get('heredoc')).toBeInstanceOf(Error);
    const files = ours.get('heredoc')!.fs.map((e) => e.path);
    expect(files).toContain('heredoc.txt');
    expect(files).toContain('plain.txt');
  });
});
