import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataLossError, MediaType, type ImageConfig, type ImageManifest } from '@tsbuild/oci';
import { loadArchive } from './archive-load.js';
import { saveArchive } from './archive-save.js';
import { ingestLayer } from './layer-ingest.js';
import { Store } from './store.js';

let dir: string;
let src: Store;
let dst: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'archive-load-'));
  src = await Store.open(join(dir, 'src'));
  dst = await Store.open(join(dir, 'dst'));
  // A layer of 300 KB, so an archive cut in its middle ends inside a blob being written.
  const pack = tar.pack();
  pack.entry({ name: 'big', mode: 0o644 }, Buffer.alloc(300_000, 7));
  pack.finalize();
  const layer = await ingestLayer(src.content, pack as unknown as Readable, { compression: 'none' });
  const cfg: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.diffID] } };
  const config = await src.putJSON(cfg, MediaType.OciConfig);
  const m: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config,
    layers: [{ mediaType: MediaType.OciLayer, digest: layer.digest, size: layer.size }],
  };
  await src.setName('example.com/app:1', await src.putJSON(m, MediaType.OciManifest));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** A ustar header block for a regular file (written by hand: tar-stream takes seconds over 90 MB of bodies). */
function ustarHeader(name: string, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'ascii');
  b.write('0000000\0', 108, 'ascii');
  b.write('0000000\0', 116, 'ascii');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  b.write('00000000000\0', 136, 'ascii');
  b.write('0', 156, 'ascii');
  b.write('ustar\x0000', 257, 'ascii');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return b;
}

/** A tar of `files` (name → body), gzip-compressed when asked. */
async function archive(name: string, files: [string, Buffer | string][], gzip = false): Promise<string> {
  const parts: Buffer[] = [];
  for (const [n, body] of files) {
    const b = Buffer.from(body);
    parts.push(ustarHeader(n, b.length), b, Buffer.alloc((512 - (b.length % 512)) % 512));
  }
  const bytes = Buffer.concat([...parts, Buffer.alloc(1024)]);
  const file = join(dir, name);
  await writeFile(file, gzip ? gzipSync(bytes, { level: 1 }) : bytes);
  return file;
}

/** The error loadArchive throws, checked to be a one-line DataLossError. */
async function loadError(file: string): Promise<string> {
  const e = await loadArchive(dst, file).then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(DataLossError);
  const message = (e as Error).message;
  expect(message).not.toContain('\n');
  return message;
}

async function expectNothingLeft(): Promise<void> {
  expect(await readdir(join(dst.root, 'ingest'))).toEqual([]);
  expect(await dst.listImages()).toEqual([]);
}

describe('loadArchive of a truncated archive', () => {
  it.each([
    ['docker-archive', false],
    ['oci-archive', false],
    ['docker-archive', true],
    ['oci-archive', true],
  ] as const)('%s (gzip: %s) cut inside a layer: one line naming the file, nothing in ingest/, nothing named', async (format, gzip) => {
    const whole = join(dir, 'whole.tar');
    await saveArchive(src, [{ name: 'example.com/app:1', descriptor: (await src.resolve('example.com/app:1')).descriptor }], whole, format);
    let bytes = await readFile(whole);
    if (gzip) bytes = gzipSync(bytes);
    // The layer is most of the archive: half of it ends inside the layer's body.
    const cut = join(dir, 'cut.tar');
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    // The error must reach the caller, not escape as an unhandled rejection (which ends the CLI's
    // process with a stack trace while a blob is half written in ingest/).
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      expect(await loadError(cut)).toMatch(new RegExp(`^${cut}: not a readable archive: `));
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    await expectNothingLeft();
    // The whole archive still loads into the same store afterwards.
    await writeFile(cut, bytes);
    expect((await loadArchive(dst, cut)).map((l) => l.name)).toEqual(['example.com/app:1']);
  });
});

describe('loadArchive refuses a manifest.json of the wrong shape in one line', () => {
  const config = Buffer.from('{"rootfs":{"type":"layers","diff_ids":[]}}');
  it.each([
    ['[null]', 'manifest.json: entry 0 is not an object'],
    ['{"Config":"c.json","Layers":[]}', 'manifest.json is not a list'],
    ['"x"', 'manifest.json is not a list'],
    ['[{"Layers":[]}]', 'manifest.json: entry 0 has no Config path'],
    ['[{"Config":"c.json"}]', 'manifest.json: entry 0: Layers is not a list of paths'],
    ['[{"Config":"c.json","Layers":[1]}]', 'manifest.json: entry 0: Layers is not a list of paths'],
    ['[{"Config":"c.json","Layers":[],"RepoTags":"a"}]', 'manifest.json: entry 0: RepoTags is not a list of names'],
    ['[{"Config":"c.json","Layers":[],"RepoTags":["UPPER/case"]}]', 'manifest.json: entry 0: RepoTags: invalid reference "UPPER/case": repository name must be lowercase'],
    ['[{"Config":"../../etc/c.json","Layers":[]}]', `manifest.json: entry 0: path "../../etc/c.json" has a '..' component`],
    ['[{"Config":"c.json","Layers":["a/../../l.tar"]}]', `manifest.json: entry 0: path "a/../../l.tar" has a '..' component`],
    ['[{"Config":"c.json","Layers":[]}, 7]', 'manifest.json: entry 1 is not an object'],
    ['not json', 'manifest.json is not valid JSON'],
  ])('%s', async (manifest, why) => {
    const file = await archive('bad.tar', [['c.json', config], ['manifest.json', manifest]]);
    expect(await loadError(file)).toContain(`${file}: ${why}`);
    await expectNothingLeft();
  });

  it('a config of the wrong shape', async () => {
    const file = await archive('bad.tar', [['c.json', '{"rootfs":{"diff_ids":{}}}'], ['manifest.json', '[{"Config":"c.json","Layers":[]}]']]);
    expect(await loadError(file)).toBe(`${file}: config c.json: rootfs.diff_ids is not a list`);
  });
});

describe('loadArchive refuses an index.json of the wrong shape in one line', () => {
  it.each([
    ['null', 'index.json has no manifests list'],
    ['{"manifests":[null]}', 'index.json: a descriptor is not an object'],
    ['{"manifests":[{"mediaType":"x","digest":"../../etc/passwd","size":1}]}', 'index.json: invalid digest "../../etc/passwd"'],
    [`{"manifests":[{"mediaType":"x","digest":"sha256:${'a'.repeat(64)}","size":"1"}]}`, `index.json: blob sha256:${'a'.repeat(64)} has an invalid size "1"`],
  ])('%s', async (index, why) => {
    const file = await archive('bad.tar', [['oci-layout', '{"imageLayoutVersion":"1.0.0"}'], ['index.json', index]]);
    expect(await loadError(file)).toBe(`${file}: ${why}`);
    await expectNothingLeft();
  });

  it('a manifest in the archive that is not an object', async () => {
    const body = Buffer.from('[1,2]');
    const { digest } = await dst.content.writeBuffer(body);
    const index = JSON.stringify({ manifests: [{ mediaType: MediaType.OciManifest, digest, size: body.length }] });
    const file = await archive('bad.tar', [['oci-layout', '{"imageLayoutVersion":"1.0.0"}'], ['index.json', index]]);
    expect(await loadError(file)).toBe(`${file}: index.json: manifest ${digest} is not a JSON object`);
  });
});

describe('loadArchive bounds what it reads into memory', () => {
  it('refuses metadata files that add up to more than 64 MiB (a small gzip of zeros)', async () => {
    const zeros = Buffer.alloc(30 << 20);
    const file = await archive('bomb.tar.gz', [['a.json', zeros], ['b.json', zeros], ['c.json', zeros], ['manifest.json', '[]']], true);
    expect(await loadError(file)).toBe(`${file}: metadata files add up to more than ${64 << 20} bytes (at c.json)`);
  });

  it('refuses a manifest.json bigger than 32 MiB', async () => {
    const file = await archive('bomb.tar.gz', [['manifest.json', Buffer.alloc((32 << 20) + 1, 0x20)]], true);
    expect(await loadError(file)).toBe(`${file}: manifest.json is ${(32 << 20) + 1} bytes, more than the ${32 << 20} a metadata file may have`);
  });
});
