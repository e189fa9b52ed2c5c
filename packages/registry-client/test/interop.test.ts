import { lstat, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, hostPlatform, parseReference, type Descriptor, type ImageIndex, type ImageManifest } from '@tsbuild/oci';
import { Store } from '@tsbuild/store';
import { RegistryClient, pull, push, type ProgressEvent } from '../src/index.js';
import { FILES, makeImage } from './image-fixture.js';
import { run, startFaultProxy, startRegistry, tempDir, type FaultProxy, type RunningRegistry } from './registry-server.js';

let reg: RunningRegistry;
let proxy: FaultProxy;
let dir: string;
let store: Store;
let image: Descriptor;
let client: RegistryClient;

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg);
  dir = await tempDir('tsbuild-interop-');
  store = await Store.open(join(dir, 'store'));
  image = await makeImage(store, { name: 'interop/app:v1' });
  client = new RegistryClient();
});
afterAll(async () => {
  await client.close();
  await proxy.stop();
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

async function expectFiles(rootfs: string): Promise<void> {
  for (const [name, type, mode, body] of FILES) {
    const st = await lstat(join(rootfs, name));
    expect(type === 'dir' ? st.isDirectory() : st.isFile(), name).toBe(true);
    expect(st.mode & 0o7777, name).toBe(mode);
    if (type === 'file') expect((await readFile(join(rootfs, name))).equals(Buffer.from(body)), name).toBe(true);
  }
}

describe('interop with skopeo and umoci through docker-registry', () => {
  it('an image pushed by tsbuild is copied by skopeo to oci: and unpacked by umoci to the same files', async () => {
    const pushed = await push(client, store, 'interop/app:v1', parseReference(`${reg.host}/interop/ours:v1`));
    expect(pushed.digest).toBe(image.digest);
    const layout = join(dir, 'from-ours');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/interop/ours:v1`, `oci:${layout}:v1`]);
    const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as ImageIndex;
    expect(idx.manifests[0]!.digest).toBe(image.digest);
    const bundle = join(dir, 'bundle-ours');
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    await expectFiles(join(bundle, 'rootfs'));
  });

  it('an image pushed by skopeo pulls into the store, which reads it', async () => {
    // The OCI layout skopeo wrote in the previous test is the source; skopeo pushes it as schema 2.
    await run('skopeo', ['copy', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${join(dir, 'from-ours')}:v1`, `docker://${reg.host}/interop/theirs:v2`]);
    const s2 = await Store.open(join(dir, 'store2'));
    const { descriptor, name } = await pull(client, s2, parseReference(`${reg.host}/interop/theirs:v2`));
    expect(name).toBe(`${reg.host}/interop/theirs:v2`);
    expect(descriptor.mediaType).toBe(MediaType.DockerManifest);
    const img = s2.image((await s2.resolve(name)).descriptor);
    expect((await img.config()).config?.Cmd).toEqual(['/usr/bin/hello']);
    const layers = await img.layers();
    expect(layers).toHaveLength(1);
    expect(layers[0]!.mediaType).toBe(MediaType.DockerLayerGzip);
    expect((await s2.fsck()).problems).toEqual([]);
  });

  it('pull then push to another repository keeps the manifest digest and mounts the blobs', async () => {
    const s3 = await Store.open(join(dir, 'store3'));
    const src = parseReference(`${proxy.host}/interop/ours:v1`);
    const pulled = await pull(client, s3, src);
    expect(pulled.descriptor.digest).toBe(image.digest);
    const events: ProgressEvent[] = [];
    proxy.log.length = 0;
    const pushed = await push(client, s3, pulled.name, parseReference(`${proxy.host}/interop/copy:v1`), { onProgress: (e) => events.push(e) });
    expect(pushed.digest).toBe(image.digest);
    expect(events.filter((e) => e.phase === 'mounted')).toHaveLength(2);
    // Blobs go largest first: with a few at a time, the last to finish is a small one.
    const waiting = events.filter((e) => e.phase === 'waiting').map((e) => e.total);
    expect(waiting).toEqual([...waiting].sort((a, b) => b - a));
    expect(waiting[0]).toBeGreaterThan(waiting.at(-1)!);
    expect(proxy.log.filter((l) => l.method === 'POST').every((l) => l.path.includes('mount=') && l.path.includes('from=interop%2Fours'))).toBe(true);
    expect(proxy.log.some((l) => l.method === 'PATCH' || (l.method === 'PUT' && l.path.includes('/uploads/')))).toBe(false);
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/copy:v1`]);
    expect(raw.stdout.trim()).toBe((await readFile(s3.content.path(image.digest), 'utf8')).trim());
  });

  it('push --format docker writes a schema 2 manifest that skopeo inspects', async () => {
    const pushed = await push(client, store, 'interop/app:v1', parseReference(`${reg.host}/interop/docker:v1`), { format: 'docker' });
    expect(pushed.mediaType).toBe(MediaType.DockerManifest);
    expect(pushed.digest).not.toBe(image.digest);
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/docker:v1`])).stdout) as ImageManifest;
    expect(raw.mediaType).toBe(MediaType.DockerManifest);
    expect(raw.config.mediaType).toBe(MediaType.DockerConfig);
    expect(raw.layers.map((l) => l.mediaType)).toEqual([MediaType.DockerLayerGzip]);
    const info = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/interop/docker:v1`])).stdout) as { Digest: string; Architecture: string };
    expect(info.Digest).toBe(pushed.digest);
    expect(info.Architecture).toBe('amd64');
  });

  it('pushes a multi-arch index with its children, and pull picks the platform asked for', async () => {
    const amd = await makeImage(store, { architecture: 'amd64', files: [[['amd', 'file', 0o644, 'amd64\n']]] });
    const arm = await makeImage(store, { architecture: 'arm64', variant: 'v8', files: [[['arm', 'file', 0o644, 'arm64\n']]] });
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    };
    const idx = await store.putJSON(index, MediaType.OciIndex);
    const dest = parseReference(`${reg.host}/interop/multi:v1`);
    const pushed = await push(client, store, idx, dest);
    expect(pushed.digest).toBe(idx.digest);
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/multi:v1`])).stdout) as ImageIndex;
    expect(raw.manifests.map((m) => m.digest)).toEqual([amd.digest, arm.digest]);
    const s4 = await Store.open(join(dir, 'store4'));
    const got = await pull(client, s4, dest, { platform: { os: 'linux', architecture: 'arm64' } });
    expect(got.descriptor.digest).toBe(arm.digest);
    expect(got.descriptor.platform).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect((await s4.image(got.descriptor).config()).architecture).toBe('arm64');
    const host = await pull(client, s4, dest);
    expect(host.descriptor.digest).toBe(hostPlatform().architecture === 'arm64' ? arm.digest : amd.digest);
    await expect(pull(client, s4, dest, { platform: { os: 'linux', architecture: 's390x' } })).rejects.toThrow(/no image for platform linux\/s390x \(the index has linux\/amd64, linux\/arm64\/v8\)/);
  });
});
