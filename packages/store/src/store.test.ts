import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  MediaType,
  NotFoundError,
  digestHex,
  sha256Of,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
} from '@tsbuild/oci';
import { Store } from './store.js';
import { runScratchDir } from './run-scratch.js';
import { ingestLayer } from './layer-ingest.js';

let root: string;
let store: Store;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'store-'));
  store = await Store.open(root);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A one-layer image whose "layer" is `layerBytes` (the store does not look inside it). */
async function makeImage(layerBytes: string, cmd = 'sh'): Promise<{ manifest: Descriptor; config: Descriptor; layer: Descriptor }> {
  const l = await ingestLayer(store.content, Readable.from([Buffer.from(layerBytes)]));
  const cfg: ImageConfig = { architecture: 'amd64', os: 'linux', config: { Cmd: [cmd] }, rootfs: { type: 'layers', diff_ids: [l.diffID] } };
  const config = await store.putJSON(cfg, MediaType.OciConfig);
  const layer: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: l.digest, size: l.size };
  const m: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] };
  return { manifest: await store.putJSON(m, MediaType.OciManifest), config, layer };
}

describe('Store.open', () => {
  it('creates the layout', async () => {
    expect((await readdir(root)).sort()).toEqual(['blobs', 'ingest', 'tmp']);
    expect(await readdir(join(root, 'blobs'))).toEqual(['sha256']);
  });
});

describe('names', () => {
  it('normalises names like docker', async () => {
    const { manifest } = await makeImage('x');
    await store.setName('busybox', manifest);
    await store.setName('myorg/app:1.0', manifest);
    await store.setName('127.0.0.1:5000/x/y:z', manifest);
    expect((await store.listImages()).map((r) => r.name)).toEqual([
      '127.0.0.1:5000/x/y:z',
      'docker.io/library/busybox:latest',
      'docker.io/myorg/app:1.0',
    ]);
  });

  it('retags a name and removes names', async () => {
    const a = await makeImage('a');
    const b = await makeImage('b');
    await store.setName('app:1', a.manifest);
    await store.setName('app:1', b.manifest);
    // the image the name left stays, untagged
    expect(await store.listImages()).toEqual([{ name: 'docker.io/library/app:1', descriptor: b.manifest }, { descriptor: a.manifest }]);
    expect(await store.removeName('docker.io/library/app:1')).toEqual(b.manifest);
    expect(await store.listImages()).toEqual([{ descriptor: a.manifest }]);
    const err = await store.removeName('app:1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe('image not known: app:1');
  });

  it('rejects invalid names and names with digests', async () => {
    const { manifest } = await makeImage('x');
    await expect(store.setName('UPPER', manifest)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.setName(`busybox@${manifest.digest}`, manifest)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('resolve', () => {
  it('finds an image by name, manifest digest, image ID and ID prefix', async () => {
    const { manifest, config } = await makeImage('a');
    await store.setName('busybox', manifest);
    await store.setName('alias:2', manifest);
    const want = { descriptor: manifest, names: ['docker.io/library/alias:2', 'docker.io/library/busybox:latest'] };
    expect(await store.resolve('busybox')).toEqual(want);
    expect(await store.resolve('docker.io/library/busybox:latest')).toEqual(want);
    expect(await store.resolve(manifest.digest)).toEqual(want);
    expect(await store.resolve(config.digest)).toEqual(want);
    expect(await store.resolve(digestHex(config.digest))).toEqual(want);
    expect(await store.resolve(digestHex(config.digest).slice(0, 12))).toEqual(want);
    expect(await store.resolve(`sha256:${digestHex(config.digest).slice(0, 5)}`)).toEqual(want);
  });

  it('says image not known for unknown names and IDs', async () => {
    await store.setName('busybox', (await makeImage('a')).manifest);
    await expect(store.resolve('alpine')).rejects.toThrow('image not known: alpine');
    await expect(store.resolve('sha256:0000000000')).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.resolve('ab')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('rejects an ambiguous ID prefix, but not two names of one image', async () => {
    // Find two configs whose digests share 3 hex digits (birthday bound: ~80 tries), in memory.
    const layer = await ingestLayer(store.content, Readable.from([Buffer.from('same')]));
    const cfg = (i: number): ImageConfig => ({ architecture: 'amd64', os: 'linux', config: { Cmd: [`c${i}`] }, rootfs: { type: 'layers', diff_ids: [layer.diffID] } });
    const seen = new Map<string, number>();
    let pair: [number, number] | undefined;
    for (let i = 0; pair === undefined; i++) {
      const prefix = digestHex(sha256Of(JSON.stringify(cfg(i)))).slice(0, 3);
      const j = seen.get(prefix);
      if (j !== undefined) pair = [j, i];
      seen.set(prefix, i);
    }
    const descs: Descriptor[] = [];
    for (const i of pair) {
      const config = await store.putJSON(cfg(i), MediaType.OciConfig);
      const m: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [{ mediaType: MediaType.OciLayerGzip, digest: layer.digest, size: layer.size }] };
      const d = await store.putJSON(m, MediaType.OciManifest);
      await store.setName(`img:${i}`, d);
      descs.push(config);
    }
    const shared = digestHex(descs[0]!.digest).slice(0, 3);
    expect(digestHex(descs[1]!.digest).slice(0, 3)).toBe(shared);
    await expect(store.resolve(shared)).rejects.toThrow(/ambiguous/);
    await expect(store.resolve(shared)).rejects.toBeInstanceOf(InvalidArgumentError);
    // The full ID still resolves, and a second name for the same image is not an ambiguity.
    const first = await store.resolve(descs[0]!.digest);
    await store.setName('other:name', first.descriptor);
    expect((await store.resolve(digestHex(descs[0]!.digest).slice(0, 12))).names).toEqual([`docker.io/library/img:${pair[0]}`, 'docker.io/library/other:name']);
  });
});

describe('gc', () => {
  it('removes unreferenced blobs, keeps referenced ones and empties ingest/ and tmp/', async () => {
    const kept = await makeImage('kept');
    const dropped = await makeImage('dropped');
    const extra = await store.content.writeBuffer(Buffer.from('extra root'));
    const stray = await store.content.writeBuffer(Buffer.from('stray'));
    await store.setName('kept', kept.manifest);
    await writeFile(join(root, 'ingest', 'leftover'), 'half a blob');
    await writeFile(join(root, 'tmp', 'scratch'), 'x');

    const res = await store.withLock('exclusive', () => store.gc({ keep: [extra.digest] }));
    expect(res.removed.map((r) => r.digest).sort()).toEqual(
      [dropped.manifest.digest, dropped.config.digest, dropped.layer.digest, stray.digest].sort(),
    );
    expect(res.bytes).toBe(dropped.manifest.size + dropped.config.size + dropped.layer.size + stray.size);
    for (const d of [kept.manifest, kept.config, kept.layer]) expect(await store.content.info(d.digest)).toBeDefined();
    expect(await store.content.info(extra.digest)).toBeDefined();
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect((await store.fsck()).problems).toEqual([]);
  });

  it("leaves a live process's run scratch directory in tmp/ (made before its run takes the lock), and removes a dead one's", async () => {
    const dead = spawnSync('true').pid!;
    await mkdir(join(root, 'tmp', `run-${process.pid}-early-x`, 'exe'), { recursive: true });
    await mkdir(join(root, 'tmp', `run-${dead}-0123456789ab`));
    await mkdir(join(root, 'tmp', 'run-image-leftover'));
    await store.withLock('exclusive', () => store.gc());
    expect(await readdir(join(root, 'tmp'))).toEqual([`run-${process.pid}-early-x`]);
    expect(runScratchDir(root, 'early-x')).toBe(join(root, 'tmp', `run-${process.pid}-early-x`));
    expect(runScratchDir(join(root, 'no-store-here'), 'x')).toBeUndefined();
  });

  it('follows an index to its child manifests', async () => {
    const child = await makeImage('child');
    const idx = await store.putJSON(
      { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [{ ...child.manifest, platform: { os: 'linux', architecture: 'amd64' } }] },
      MediaType.OciIndex,
    );
    await store.setName('multi', idx);
    const res = await store.gc();
    expect(res.removed).toEqual([]);
    expect((await store.image(idx).config()).config?.Cmd).toEqual(['sh']);
  });
});

describe('fsck', () => {
  it('passes a healthy store and counts what it hashed', async () => {
    const { manifest, config, layer } = await makeImage('healthy');
    await store.setName('ok', manifest);
    const r = await store.fsck();
    expect(r.problems).toEqual([]);
    expect(r.blobsChecked).toBe(3);
    expect(r.bytesChecked).toBe(manifest.size + config.size + layer.size);
  });

  it('detects a flipped byte in a blob', async () => {
    const { manifest, layer } = await makeImage('will be corrupted');
    await store.setName('ok', manifest);
    const fh = await open(store.content.path(layer.digest), 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 10);
    b[0] = (b[0] as number) ^ 0x01;
    await fh.write(b, 0, 1, 10);
    await fh.close();
    const r = await store.fsck();
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ kind: 'corrupt-blob', digest: layer.digest });
  });

  it('detects a name pointing at a missing manifest', async () => {
    await store.setName('ghost', { mediaType: MediaType.OciManifest, digest: sha256Of('nothing'), size: 7 });
    const r = await store.fsck();
    expect(r.problems).toEqual([
      expect.objectContaining({ kind: 'missing-blob', digest: sha256Of('nothing'), name: 'docker.io/library/ghost:latest' }),
    ]);
  });

  it('detects a manifest whose layer is missing', async () => {
    const { manifest, layer } = await makeImage('layer gone');
    await store.setName('partial', manifest);
    await store.content.delete(layer.digest);
    const r = await store.fsck();
    expect(r.problems).toEqual([expect.objectContaining({ kind: 'missing-blob', digest: layer.digest, name: 'docker.io/library/partial:latest' })]);
  });

  /** Names an image whose manifest is `manifest` as stored bytes (which may not be a manifest at all). */
  async function nameRaw(name: string, manifest: string): Promise<Descriptor> {
    const { digest, size } = await store.content.writeBuffer(Buffer.from(manifest));
    const d = { mediaType: MediaType.OciManifest, digest, size };
    await store.setName(name, d);
    return d;
  }

  it.each([
    ['not JSON', '{"config":', 'bad-json', /^blob sha256:\w+ is not valid JSON/],
    ['[null]', '[null]', 'bad-shape', /^manifest sha256:\w+: not a JSON object$/],
    ['null', 'null', 'bad-shape', /^manifest sha256:\w+: not a JSON object$/],
    ['config null', '{"config":null,"layers":[]}', 'bad-shape', /^manifest sha256:\w+: config: not a descriptor object$/],
    ['layers not a list', `{"config":{"mediaType":"x","digest":"${sha256Of('c')}","size":1},"layers":{}}`, 'bad-shape', /^manifest sha256:\w+: no layers list$/],
    ['a layer with a bad digest', `{"config":{"mediaType":"x","digest":"${sha256Of('c')}","size":1},"layers":[{"mediaType":"x","digest":"../../x","size":1}]}`, 'bad-shape', /^manifest sha256:\w+: layers\[0\]: invalid digest "..\/..\/x"$/],
  ])('detects a manifest that is %s', async (_what, manifest, kind, message) => {
    const d = await nameRaw('broken', manifest);
    const problems = (await store.fsck()).problems.filter((p) => p.digest === d.digest);
    expect(problems).toEqual([expect.objectContaining({ kind, name: 'docker.io/library/broken:latest', message: expect.stringMatching(message) })]);
  });

  it.each([
    ['not JSON', '{"rootfs":', 'bad-json', ' is not valid JSON'],
    ['null', 'null', 'bad-shape', ': not a JSON object'],
    ['without rootfs', '{"architecture":"amd64"}', 'bad-shape', ': rootfs.diff_ids is not a list'],
    ['with a diffID that is not a digest', '{"rootfs":{"type":"layers","diff_ids":[7]}}', 'bad-shape', ': rootfs.diff_ids[0] is not a digest'],
    ['with more diffIDs than layers', `{"rootfs":{"type":"layers","diff_ids":["${sha256Of('a')}","${sha256Of('b')}"]}}`, 'bad-shape', ": lists 2 diff_ids for the manifest's 1 layers"],
  ])('detects a config that is %s', async (_what, configText, kind, message) => {
    const { layer } = await makeImage('a layer');
    const config = { mediaType: MediaType.OciConfig, ...(await store.content.writeBuffer(Buffer.from(configText))) };
    await store.setName('badconfig', await store.putJSON({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] }, MediaType.OciManifest));
    expect((await store.fsck()).problems).toEqual([
      expect.objectContaining({ kind, digest: config.digest, name: 'docker.io/library/badconfig:latest', message: expect.stringContaining(`config ${config.digest}${message}`) }),
    ]);
  });
});

describe('image', () => {
  it('reads manifest, config and layers lazily; uncompressed() gunzips to the diffID bytes', async () => {
    const { manifest, config, layer } = await makeImage('layer content');
    const img = store.image(manifest);
    expect((await img.configDescriptor()).digest).toBe(config.digest);
    const layers = await img.layers();
    expect(layers).toHaveLength(1);
    const l = layers[0]!;
    expect(l.digest).toBe(layer.digest);
    expect(l.diffID).toBe(sha256Of('layer content'));
    expect((await buffer(await l.uncompressed())).toString()).toBe('layer content');
    expect(gunzipSync(await buffer(await l.compressed())).toString()).toBe('layer content');
  });

  it('ingestLayer with compression none stores the tar itself', async () => {
    const r = await ingestLayer(store.content, Readable.from([Buffer.from('plain tar')]), { compression: 'none' });
    expect(r).toEqual({ digest: sha256Of('plain tar'), size: 9, diffID: sha256Of('plain tar'), mediaType: MediaType.OciLayer });
  });
});

describe('untagged images', () => {
  it('addImage records an image without a name; resolve finds it by ID; gc keeps it', async () => {
    const a = await makeImage('untagged');
    await store.addImage(a.manifest);
    await store.addImage(a.manifest); // idempotent
    expect(await store.listImages()).toEqual([{ descriptor: a.manifest }]);
    expect(await store.resolve(digestHex(a.config.digest).slice(0, 12))).toEqual({ descriptor: a.manifest, names: [] });
    expect((await store.gc()).removed).toEqual([]);
    expect((await store.fsck()).problems).toEqual([]);
  });

  it('a name moved to another image leaves the old one untagged, as docker shows <none>', async () => {
    const a = await makeImage('first');
    const b = await makeImage('second');
    await store.setName('app', a.manifest);
    await store.setName('app', b.manifest);
    expect(await store.listImages()).toEqual([{ name: 'docker.io/library/app:latest', descriptor: b.manifest }, { descriptor: a.manifest }]);
    // naming the untagged image again drops its untagged record
    await store.setName('again', a.manifest);
    expect((await store.listImages()).map((r) => r.name)).toEqual(['docker.io/library/again:latest', 'docker.io/library/app:latest']);
  });

  it('a moved name leaves nothing untagged when another name still keeps the old image', async () => {
    const a = await makeImage('first');
    const b = await makeImage('second');
    await store.setName('app', a.manifest);
    await store.setName('keep', a.manifest);
    await store.setName('app', b.manifest);
    expect((await store.listImages()).every((r) => r.name !== undefined)).toBe(true);
  });

  it('removeImage drops every name and the untagged record', async () => {
    const a = await makeImage('x');
    await store.setName('one', a.manifest);
    await store.setName('two', a.manifest);
    expect((await store.removeImage(a.manifest.digest)).sort()).toEqual(['docker.io/library/one:latest', 'docker.io/library/two:latest']);
    expect(await store.listImages()).toEqual([]);
    await store.addImage(a.manifest);
    expect(await store.removeImage(a.manifest.digest)).toEqual([]);
    await expect(store.removeImage(a.manifest.digest)).rejects.toThrow(NotFoundError);
  });
});
