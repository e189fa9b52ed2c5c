import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ImageConfig, type ImageIndex, isIndexMediaType } from '@tsbuild/oci';
import { Store, emptyManifestList, readManifestList, withEntry, writeManifestList } from '@tsbuild/store';
import { IMAGE_ID_LINE, TestStore } from './harness.js';
import { type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';

/**
 * `tsbuild build --platform a,b`, `from --platform`, `run --platform` (issue 18). The bases: a
 * list `localhost/bb` of busybox (this machine, with /platform = amd64) and a fake linux/arm64
 * busybox made with working containers (`from`, `config --arch arm64 --variant v8`, `commit`;
 * /platform = arm64), combined through writeManifestList. Nothing runs in an arm64 image here.
 */
describe('building for several platforms with the CLI', () => {
  const t = new TestStore();
  let ctx: string;
  beforeAll(async () => {
    await t.importBusybox();
    const files = await t.context({ amd64: 'amd64\n', arm64: 'arm64\n' });
    for (const arch of ['amd64', 'arm64']) {
      const ctr = (await t.run(['from', '-q', 'busybox'])).stdout.trim();
      expect((await t.run(['copy', ctr, path.join(files, arch), '/platform'])).code).toBe(0);
      if (arch === 'arm64') expect((await t.run(['config', '--arch', 'arm64', '--variant', 'v8', ctr])).code).toBe(0);
      expect((await t.run(['commit', '-q', '--rm', ctr, `busybox-${arch}`])).code).toBe(0);
    }
    const store = await Store.open(t.root);
    let list = emptyManifestList('oci');
    for (const arch of ['amd64', 'arm64']) {
      const { descriptor } = await store.resolve(`busybox-${arch}`);
      const c = await store.image(descriptor).config();
      list = withEntry(list, { ...descriptor, platform: { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) } });
    }
    await writeManifestList(store, 'localhost/bb', list);
    ctx = await t.context({
      Dockerfile: 'FROM localhost/bb\nARG TARGETARCH\nLABEL arch=$TARGETARCH\nCOPY a.txt /a.txt\n',
      'a.txt': 'a\n',
    });
  }, 120_000);
  afterAll(() => t.cleanup());

  async function listOf(name: string): Promise<{ list: ImageIndex; configs: ImageConfig[] }> {
    const store = await Store.open(t.root);
    const { list } = await readManifestList(store, name);
    return { list, configs: await Promise.all(list.manifests.map((m) => store.image(m).config())) };
  }

  it('-t with two platforms names a list of both images and prints its digest', async () => {
    const r = await t.run(['build', '--platform', 'linux/amd64,linux/aarch64', '-t', 'localhost/app', ctx]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('[linux/arm64/v8] STEP 3/4: LABEL arch=$TARGETARCH');
    const digest = r.stdout.trim().split('\n').at(-1)!;
    expect(digest).toMatch(IMAGE_ID_LINE);
    const store = await Store.open(t.root);
    const { descriptor } = await store.resolve('localhost/app');
    expect(isIndexMediaType(descriptor.mediaType)).toBe(true);
    expect(descriptor.digest).toBe(`sha256:${digest}`);
    const { list, configs } = await listOf('localhost/app');
    expect(list.manifests.map((m) => m.platform)).toEqual([
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
    expect(configs.map((c) => [c.architecture, c.config?.Labels?.arch])).toEqual([
      ['amd64', 'amd64'],
      ['arm64', 'arm64'],
    ]);
  });

  it('--platform repeated, --manifest, -q and --iidfile: only the list digest, and the file gets it', async () => {
    const iid = path.join(t.tmp, 'iid');
    const r = await t.run(['build', '-q', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '--manifest', 'localhost/m', '--jobs', '1', '--iidfile', iid, ctx]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    expect(await fsp.readFile(iid, 'utf8')).toBe(`sha256:${r.stdout.trim()}`);
    expect((await listOf('localhost/m')).list.manifests).toHaveLength(2);
  });

  it('-t with one platform stays an image; --all-platforms builds what the base list has', async () => {
    const one = await t.run(['build', '-q', '--platform', 'linux/arm64', '-t', 'localhost/one', ctx]);
    expect(one.code).toBe(0);
    const store = await Store.open(t.root);
    const { descriptor } = await store.resolve('localhost/one');
    expect(isIndexMediaType(descriptor.mediaType)).toBe(false);
    expect((await store.image(descriptor).config()).architecture).toBe('arm64');
    const all = await t.run(['build', '-q', '--all-platforms', '-t', 'localhost/all', ctx]);
    expect(all.stderr).toBe('');
    expect((await listOf('localhost/all')).list.manifests.map((m) => m.platform?.architecture)).toEqual(['amd64', 'arm64']);
  });

  it('bad --platform values are one-line usage errors (exit status 2)', async () => {
    for (const bad of ['linux', 'linux/amd64/v2/x', 'linux/amd64,', 'linux/am d64']) {
      const r = await t.run(['build', '--platform', bad, ctx]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^Error: --platform .*invalid platform ".*": want os\/arch\[\/variant\]/);
    }
    const both = await t.run(['build', '--all-platforms', '--platform', 'linux/amd64', ctx]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/^Error: --all-platforms and --platform cannot be used together/);
    const from = await t.run(['from', '--platform', 'arm64', 'localhost/bb']);
    expect(from.code).toBe(2);
    expect(from.stderr).toMatch(/^Error: --platform arm64: invalid platform "arm64"/);
  });

  it('from --platform and run --platform pick that platform\'s image from a list', async () => {
    const ctr = (await t.run(['from', '-q', '--platform', 'linux/arm64', 'localhost/bb'])).stdout.trim();
    const inspect = JSON.parse((await t.run(['inspect', ctr])).stdout) as { Config: ImageConfig };
    expect([inspect.Config.architecture, inspect.Config.variant]).toEqual(['arm64', 'v8']);
    const store = await Store.open(t.root);
    const arm = (await store.resolve('busybox-arm64')).descriptor;
    expect((JSON.parse((await t.run(['inspect', ctr])).stdout) as { FromImageDigest: string }).FromImageDigest).toBe(arm.digest);
    const run = await t.run(['run', '--rm', '--platform', 'linux/x86_64', 'localhost/bb', 'cat', '/platform']);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('amd64\n');
    const missing = await t.run(['run', '--rm', '--platform', 'linux/s390x', 'localhost/bb', 'true']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('Error: image localhost/bb: manifest list localhost/bb has no image for platform linux/s390x (it has linux/amd64, linux/arm64/v8)\n');
  });

  it('run --platform on a working container is one line', async () => {
    const ctr = (await t.run(['from', '-q', 'busybox'])).stdout.trim();
    const r = await t.run(['run', '--platform', 'linux/amd64', ctr, '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: ${ctr} is a working container: --platform applies to images only (see: tsbuild from --platform)\n`);
  });

  describe('with a registry\'s list as the base', () => {
    let reg: RunningRegistry;
    const fresh = new TestStore();
    beforeAll(async () => {
      reg = await startRegistry();
      const repo = `${reg.host}/bb`;
      const entries = [];
      for (const arch of ['amd64', 'arm64']) {
        expect(await t.run(['push', '-q', '--tls-verify=false', `busybox-${arch}`, `${repo}:${arch}`])).toMatchObject({ stderr: '', code: 0 });
        const res = await fetch(`http://${reg.host}/v2/bb/manifests/${arch}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
        const body = Buffer.from(await res.arrayBuffer());
        entries.push({
          mediaType: res.headers.get('content-type')!,
          digest: res.headers.get('docker-content-digest')!,
          size: body.length,
          platform: arch === 'amd64' ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64', variant: 'v8' },
        });
      }
      const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: entries });
      const put = await fetch(`http://${reg.host}/v2/bb/manifests/multi`, { method: 'PUT', headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' }, body: index });
      expect(put.status).toBe(201);
    }, 120_000);
    afterAll(async () => {
      await reg.stop();
      await fresh.cleanup();
    });

    it('each platform\'s FROM pulls that platform\'s image from the registry\'s list', async () => {
      const base = `${reg.host}/bb:multi`;
      const c = await fresh.context({ Dockerfile: `FROM ${base}\nCOPY a.txt /a.txt\n`, 'a.txt': 'a\n' });
      const r = await fresh.run(['build', '-q', '--tls-verify=false', '--platform', 'linux/amd64,linux/arm64', '-t', 'localhost/pulled', c]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const store = await Store.open(fresh.root);
      const { list } = await readManifestList(store, 'localhost/pulled');
      const configs = await Promise.all(list.manifests.map((m) => store.image(m).config()));
      expect(configs.map((x) => x.architecture)).toEqual(['amd64', 'arm64']);
      // Each is built on its platform's base (whose last layer holds /platform = amd64 or arm64).
      const src = await Store.open(t.root);
      for (const [i, arch] of ['amd64', 'arm64'].entries()) {
        const baseIDs = (await src.image((await src.resolve(`busybox-${arch}`)).descriptor).config()).rootfs.diff_ids;
        expect(configs[i]!.rootfs.diff_ids.slice(0, baseIDs.length)).toEqual(baseIDs);
      }
      const all = await fresh.run(['build', '-q', '--tls-verify=false', '--all-platforms', '--manifest', 'localhost/all-remote', c]);
      expect(all.stderr).toBe('');
      expect((await readManifestList(store, 'localhost/all-remote')).list.manifests.map((m) => m.platform?.architecture)).toEqual(['amd64', 'arm64']);
      // The base's name is left to the host's image: a build without --platform starts from amd64,
      // whichever platform was pulled last.
      const host = await fresh.run(['build', '-q', '--tls-verify=false', '-t', 'localhost/host-only', c]);
      expect(host.code).toBe(0);
      const amd64Base = (await src.image((await src.resolve('busybox-amd64')).descriptor).config()).rootfs.diff_ids;
      expect((await store.image((await store.resolve('localhost/host-only')).descriptor).config()).rootfs.diff_ids.slice(0, amd64Base.length)).toEqual(amd64Base);
      expect((await store.image((await store.resolve(base)).descriptor).config()).architecture).toBe('amd64');
    });
  });
});
