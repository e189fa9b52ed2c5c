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
import { build, importRootfs } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

const FIXTURES = path.resolve(import.meta.dirname, '../../../fixtures/differential');
const NAMES = ['basic', 'copy', 'copy-fidelity', 'args', 'multistage', 'config', 'dockerignore', 'run-mounts', 'user-workdir', 'add-files', 'heredoc'];

/**
 * Documented, justified differences:
 * - heredoc: buildah 1.28 has no here-documents (they came with buildah 1.33); it reads the body
 *   lines as instructions and fails. The fixture checks that buildah fails, and tsbuild's result
 *   on its own.
 * - etc/hostname, etc/hosts, etc/resolv.conf (empty files) and the directories etc and run:
 *   buildah's RUN creates them in the rootfs as bind-mount targets and commits them; tsbuild
 *   leaves nothing of its mounts in a layer. They are dropped from buildah's side when they have
 *   exactly that shape.
 * - Labels io.buildah.version: buildah adds it to every image.
 * - VOLUME directories: buildah (like docker's classic builder) creates each VOLUME path in the
 *   rootfs; BuildKit does not, and neither does tsbuild (a volume is config, not content). Empty
 *   directories at exactly the config's Volumes are dropped from buildah's side.
 * - RUN --mount targets: buildah 1.28 leaves the directories it created above a mount target
 *   (mnt for /mnt/assets, var/cache for /var/cache/fixture) in the layer; BuildKit leaves no
 *   trace of a mount, and neither does tsbuild. Those empty directories, listed per fixture in
 *   MOUNT_PARENTS, are dropped from buildah's side.
 * - mtimes are not compared: each tool ran the steps at its own time (COPY keeps the context's
 *   mtimes in both; the conformance suite checks that).
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
}

async function flatten(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(root, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const abs = path.join(root, r);
      const st = await fsp.lstat(abs);
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : 'other';
      const e: Entry = { path: r, type, mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
      if (type === 'file') e.sha256 = createHash('sha256').update(await fsp.readFile(abs)).digest('hex');
      if (type === 'symlink') e.link = await fsp.readlink(abs);
      out.push(e);
      if (type === 'dir') await walk(r);
    }
  };
  await walk('');
  return out;
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
  const store = await Store.open(path.join(tmp, 'store'));
  const snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  const archive = path.join(tmp, 'busybox.tar');
  await saveArchive(store, [{ name: 'busybox', descriptor: (await store.resolve('busybox')).descriptor }], archive, 'oci-archive');
  await sh('skopeo', ['copy', '-q', `oci-archive:${archive}`, `containers-storage:[overlay@${bRoot}+${bRunroot}]docker.io/library/busybox:latest`]);
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });

  const oursAll = (async () => {
    for (const name of NAMES) {
      const r = await build({ store, snapshotter, context: path.join(FIXTURES, name), tags: [`diff-${name}`], buildArgs: name === 'args' ? { VERSION: '2.5' } : {}, stdout: quiet, stderr: quiet });
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
        await buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--pull=never', '--format', 'docker', '-q', ...(name === 'args' ? ['--build-arg', BUILD_ARGS.args[0]!] : []), '-t', `diff-${name}`, path.join(FIXTURES, name));
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
  it.each(compared)('%s: same flattened filesystem (path, type, mode, owner, content, link target)', (name) => {
    const t = theirs.get(name);
    if (t instanceof Error) throw t;
    // One line per entry, so a difference shows as the lines that differ.
    const a = ours.get(name)!.fs.map((e) => JSON.stringify(e)).join('\n');
    const b = withoutArtefacts(t!.fs, Object.keys((t!.config.Volumes as Record<string, unknown> | undefined) ?? {}), MOUNT_PARENTS[name] ?? []).map((e) => JSON.stringify(e)).join('\n');
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
