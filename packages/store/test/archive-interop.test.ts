import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLossError, MediaType, sha256Of, type Descriptor, type ImageConfig, type ImageManifest } from '@tsbuild/oci';
import { Store, ingestLayer, loadArchive, saveArchive } from '../src/index.js';

const run = promisify(execFile);

/** The files of the test image: path → [type, mode, content or link target]. */
const FILES: [string, 'dir' | 'file' | 'symlink', number, string][] = [
  ['etc', 'dir', 0o755, ''],
  ['etc/hostname', 'file', 0o644, 'tsbuild-test\n'],
  ['usr', 'dir', 0o755, ''],
  ['usr/bin', 'dir', 0o755, ''],
  ['usr/bin/hello', 'file', 0o755, '#!/bin/sh\necho hello\n'],
  ['usr/bin/hi', 'symlink', 0o777, 'hello'],
  ['data', 'dir', 0o700, ''],
  ['data/secret.txt', 'file', 0o600, 'x'.repeat(100_000)],
];

function layerTar(): Readable {
  const pack = tar.pack();
  for (const [name, type, mode, body] of FILES) {
    if (type === 'dir') pack.entry({ name: `${name}/`, type: 'directory', mode });
    else if (type === 'symlink') pack.entry({ name, type: 'symlink', linkname: body, mode });
    else pack.entry({ name, mode }, body);
  }
  pack.finalize();
  return pack as unknown as Readable;
}

let dir: string;
let store: Store;
let image: { manifest: Descriptor; config: Descriptor };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'store-interop-'));
  store = await Store.open(join(dir, 'root'));
  const layer = await ingestLayer(store.content, layerTar());
  const cfg: ImageConfig = {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/usr/bin/hello'], Env: ['PATH=/usr/bin'] },
    rootfs: { type: 'layers', diff_ids: [layer.diffID] },
    history: [{ created: '2024-01-01T00:00:00Z', created_by: 'test' }],
  };
  const config = await store.putJSON(cfg, MediaType.OciConfig);
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config,
    layers: [{ mediaType: MediaType.OciLayerGzip, digest: layer.digest, size: layer.size }],
  };
  image = { manifest: await store.putJSON(m, MediaType.OciManifest), config };
  await store.setName('tsbuild/interop:v1', image.manifest);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Unpacks oci:<layout>:<tag> with umoci and checks the rootfs holds exactly FILES. */
async function expectUmociRootfs(layout: string, tag: string): Promise<void> {
  const bundle = join(dir, `bundle-${tag}-${Math.random().toString(16).slice(2)}`);
  await run('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
  const rootfs = join(bundle, 'rootfs');
  for (const [name, type, mode, body] of FILES) {
    const p = join(rootfs, name);
    const st = await lstat(p);
    if (type === 'dir') {
      expect(st.isDirectory(), name).toBe(true);
      expect(st.mode & 0o7777, name).toBe(mode);
    } else if (type === 'symlink') {
      expect(st.isSymbolicLink(), name).toBe(true);
      expect(await readlink(p)).toBe(body);
    } else {
      expect(st.isFile(), name).toBe(true);
      expect(st.mode & 0o7777, name).toBe(mode);
      expect(await readFile(p, 'utf8')).toBe(body);
    }
  }
  await rm(bundle, { recursive: true, force: true });
}

describe('archives interoperate with skopeo and umoci', () => {
  it('oci-archive saved by tsbuild: skopeo copies it, umoci unpacks the same files, manifest kept', async () => {
    const f = join(dir, 'img.oci.tar');
    await saveArchive(store, [{ name: 'tsbuild/interop:v1', descriptor: image.manifest }], f, 'oci-archive');
    const layout = join(dir, 'from-oci');
    await run('skopeo', ['copy', `oci-archive:${f}`, `oci:${layout}:t`]);
    const { stdout } = await run('skopeo', ['inspect', '--raw', `oci:${layout}:t`]);
    expect(sha256Of(stdout)).toBe(image.manifest.digest);
    await expectUmociRootfs(layout, 't');
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    expect(index.manifests[0]?.digest).toBe(image.manifest.digest);
  });

  it('docker-archive saved by tsbuild: skopeo copies it with the same image ID, umoci unpacks the same files', async () => {
    const f = join(dir, 'img.docker.tar');
    await saveArchive(store, [{ name: 'tsbuild/interop:v1', descriptor: image.manifest }], f, 'docker-archive');
    const { stdout: list } = await run('tar', ['tf', f]);
    expect(list.split('\n').filter(Boolean).sort()).toEqual(
      expect.arrayContaining(['manifest.json', 'repositories', `${image.config.digest.slice(7)}.json`]),
    );
    // skopeo reads back the config byte-identical (the image ID docker would show)...
    const { stdout: rawConfig } = await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${f}`]);
    expect(sha256Of(rawConfig)).toBe(image.config.digest);
    const { stdout: inspect } = await run('skopeo', ['inspect', `docker-archive:${f}`]);
    expect((JSON.parse(inspect) as { Layers: string[] }).Layers).toEqual((await store.image(image.manifest).layers()).map((l) => l.diffID));
    // ...and copies it into an OCI layout (re-serialising the config as it converts the manifest).
    const layout = join(dir, 'from-docker');
    await run('skopeo', ['copy', `docker-archive:${f}`, `oci:${layout}:t`]);
    const copied = await run('skopeo', ['inspect', '--config', '--raw', `oci:${layout}:t`]);
    expect((JSON.parse(copied.stdout) as ImageConfig).rootfs).toEqual((JSON.parse(rawConfig) as ImageConfig).rootfs);
    await expectUmociRootfs(layout, 't');
  });

  it('archives written by skopeo load into tsbuild with their names and the same image ID', async () => {
    const layout = join(dir, 'src-layout');
    const src = join(dir, 'src.oci.tar');
    await saveArchive(store, [{ name: 'tsbuild/interop:v1', descriptor: image.manifest }], src, 'oci-archive');
    await run('skopeo', ['copy', `oci-archive:${src}`, `oci:${layout}:t`]);
    const f2 = join(dir, 'skopeo.docker.tar');
    const f3 = join(dir, 'skopeo.oci.tar');
    await run('skopeo', ['copy', `oci:${layout}:t`, `docker-archive:${f2}:x/y:z`]);
    await run('skopeo', ['copy', `oci:${layout}:t`, `oci-archive:${f3}:x/y:z`]);

    const fresh = await Store.open(join(dir, 'fresh'));
    const fromDocker = await loadArchive(fresh, f2);
    expect(fromDocker.map((i) => i.name)).toEqual(['docker.io/x/y:z']);
    expect((await fresh.image(fromDocker[0]!.descriptor).configDescriptor()).digest).toBe(image.config.digest);
    const layers = await fresh.image(fromDocker[0]!.descriptor).layers();
    expect(layers.map((l) => l.diffID)).toEqual((await store.image(image.manifest).layers()).map((l) => l.diffID));
    // docker-archive layer tars are stored as they came, uncompressed: the blob is the diffID.
    expect(layers.map((l) => l.mediaType)).toEqual(layers.map(() => MediaType.OciLayer));
    expect(layers.map((l) => l.digest)).toEqual(layers.map((l) => l.diffID));

    const other = await Store.open(join(dir, 'fresh-oci'));
    const fromOci = await loadArchive(other, f3);
    expect(fromOci.map((i) => i.name)).toEqual(['docker.io/x/y:z']);
    expect(fromOci[0]!.descriptor.digest).toBe(image.manifest.digest);
    expect((await other.image(fromOci[0]!.descriptor).configDescriptor()).digest).toBe(image.config.digest);
    expect((await other.resolve('x/y:z')).descriptor.digest).toBe(image.manifest.digest);
    expect((await other.fsck()).problems).toEqual([]);
    expect((await fresh.fsck()).problems).toEqual([]);

    // An OCI layout directory and a gzip-compressed archive load too.
    const third = await Store.open(join(dir, 'fresh-dir'));
    const fromDir = await loadArchive(third, layout);
    expect(fromDir[0]!.descriptor.digest).toBe(image.manifest.digest);
    expect(fromDir[0]!.name).toBeUndefined(); // skopeo wrote only the tag "t"
    const gz = join(dir, 'skopeo.docker.tar.gz');
    await writeFile(gz, gzipSync(await readFile(f2)));
    const fromGz = await loadArchive(third, gz);
    expect(fromGz[0]!.name).toBe('docker.io/x/y:z');
    expect((await third.image(fromGz[0]!.descriptor).configDescriptor()).digest).toBe(image.config.digest);
  });

  it('tsbuild round-trips its own docker-archive and oci-archive', async () => {
    const fd = join(dir, 'rt.docker.tar');
    const fo = join(dir, 'rt.oci.tar');
    await saveArchive(store, [{ name: 'tsbuild/interop:v1', descriptor: image.manifest }], fd, 'docker-archive');
    await saveArchive(store, [{ name: 'tsbuild/interop:v1', descriptor: image.manifest }], fo, 'oci-archive');
    const s = await Store.open(join(dir, 'rt'));
    const d = await loadArchive(s, fd);
    const o = await loadArchive(s, fo);
    expect(d[0]!.name).toBe('docker.io/tsbuild/interop:v1');
    expect(o[0]!.name).toBe('docker.io/tsbuild/interop:v1');
    expect(o[0]!.descriptor.digest).toBe(image.manifest.digest);
    expect((await s.image(d[0]!.descriptor).configDescriptor()).digest).toBe(image.config.digest);
  });

  it('a corrupt archive is rejected and leaves nothing named', async () => {
    const f = join(dir, 'bad.oci.tar');
    await saveArchive(store, [{ name: 'tsbuild/interop:v1', descriptor: image.manifest }], f, 'oci-archive');
    // Flip a byte inside the big layer blob: far from any tar header.
    const buf = await readFile(f);
    const layerHex = (await store.image(image.manifest).layers())[0]!.digest.slice(7);
    const at = buf.indexOf(Buffer.from(`blobs/sha256/${layerHex}`)) + 512 + 100;
    buf[at] = (buf[at] as number) ^ 0xff;
    await writeFile(f, buf);
    const s = await Store.open(join(dir, 'bad'));
    await expect(loadArchive(s, f)).rejects.toBeInstanceOf(DataLossError);
    expect(await s.listImages()).toEqual([]);
    expect((await s.fsck()).problems).toEqual([]);
  });
});
