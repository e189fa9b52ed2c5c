import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore } from './harness.js';

/** path → "type mode uid:gid size/target" for every entry under dir, as find prints it. */
function tree(dir: string): string[] {
  return execFileSync('find', ['.', '-printf', '%P %y %m %U:%G %s %l\n'], { cwd: dir, encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith(' '))
    .map((l) => (l.split(' ')[1] === 'd' ? l.replace(/ \d+ $/, ' - ') : l))
    .sort();
}

describe('import, tag, rmi, save, load and prune', () => {
  const t = new TestStore();
  let rootfs: string;
  beforeAll(async () => {
    rootfs = await t.importBusybox('base:1');
  });
  afterAll(() => t.cleanup());

  it('import gives a one-layer image named like docker does', async () => {
    const inspect = JSON.parse((await t.run(['inspect', 'base:1'])).stdout);
    expect(inspect.Names).toEqual(['docker.io/library/base:1']);
    expect(inspect.Manifest.layers).toHaveLength(1);
    expect(inspect.Config.rootfs.diff_ids).toHaveLength(1);
  });

  it.each([['tar', []], ['tar.gz', ['-z']]] as const)('import of a %s rootfs gives the same files and builds on', async (ext, flags) => {
    const file = path.join(t.tmp, `rootfs.${ext}`);
    execFileSync('tar', ['-C', rootfs, ...flags, '-cf', file, '.']);
    expect((await t.run(['import', file, `fromtar:${ext.replace('.', '-')}`])).code).toBe(0);
    const archive = path.join(t.tmp, `fromtar-${ext}.tar`);
    expect((await t.run(['save', `fromtar:${ext.replace('.', '-')}`, '-o', archive])).code).toBe(0);
    const oci = path.join(t.tmp, `oci-fromtar-${ext}`);
    execFileSync('skopeo', ['copy', '-q', `oci-archive:${archive}`, `oci:${oci}:x`]);
    const bundle = path.join(t.tmp, `bundle-fromtar-${ext}`);
    execFileSync('umoci', ['unpack', '--image', `${oci}:x`, bundle]);
    expect(tree(path.join(bundle, 'rootfs'))).toEqual(tree(rootfs));
    const ctx = await t.context({ Dockerfile: `FROM fromtar:${ext.replace('.', '-')}\nRUN echo ok > /ok\n` });
    expect((await t.run(['build', ctx])).code).toBe(0);
  });

  it('tag adds a name; the short image ID resolves; rmi removes the name', async () => {
    expect((await t.run(['tag', 'base:1', 'localhost/other:2'])).code).toBe(0);
    const id = JSON.parse((await t.run(['inspect', 'base:1'])).stdout).Id as string;
    const byId = JSON.parse((await t.run(['inspect', id.slice(7, 19)])).stdout);
    expect(byId.Names.sort()).toEqual(['docker.io/library/base:1', 'localhost/other:2']);
    expect((await t.run(['rmi', 'localhost/other:2'])).code).toBe(0);
    expect(JSON.parse((await t.run(['inspect', 'base:1'])).stdout).Names).toEqual(['docker.io/library/base:1']);
  });

  it.each(['oci-archive', 'docker-archive'])('save --format %s is read by skopeo and unpacked by umoci with the same files', async (format) => {
    const archive = path.join(t.tmp, `base.${format}.tar`);
    expect((await t.run(['save', 'base:1', '-o', archive, '--format', format])).code).toBe(0);
    const oci = path.join(t.tmp, `oci-${format}`);
    execFileSync('skopeo', ['copy', '-q', `${format}:${archive}`, `oci:${oci}:base`]);
    const bundle = path.join(t.tmp, `bundle-${format}`);
    execFileSync('umoci', ['unpack', '--image', `${oci}:base`, bundle]);
    expect(tree(path.join(bundle, 'rootfs'))).toEqual(tree(rootfs));
  });

  it('loads an archive written by skopeo, keeping the image ID', async () => {
    const id = JSON.parse((await t.run(['inspect', 'base:1'])).stdout).Id as string;
    const ours = path.join(t.tmp, 'ours.tar');
    await t.run(['save', 'base:1', '-o', ours, '--format', 'oci-archive']);
    const theirs = path.join(t.tmp, 'skopeo-docker.tar');
    execFileSync('skopeo', ['copy', '-q', `oci-archive:${ours}`, `docker-archive:${theirs}:example.com/loaded:7`]);
    const r = await t.run(['load', '-i', theirs]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('example.com/loaded:7');
    expect(JSON.parse((await t.run(['inspect', 'example.com/loaded:7'])).stdout).Id).toBe(id);
  });

  it('prune frees what no image references and keeps what one does', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM base:1\nRUN echo x > /x\n' });
    expect((await t.run(['build', '-t', 'temp', ctx])).code).toBe(0);
    expect((await t.run(['rmi', 'temp'])).code).toBe(0);
    // a plain prune keeps the build cache's layers, so the rebuild below stays cached
    const kept = await t.run(['prune']);
    expect(kept.code).toBe(0);
    expect(kept.stdout).not.toMatch(/deleted blob/);
    expect(kept.stdout).toMatch(/deleted snapshot sha256:/);
    const r = await t.run(['prune', '--build-cache']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dropped \d+ build cache entries/);
    expect(r.stdout).toMatch(/deleted blob sha256:/);
    expect(r.stdout).toMatch(/Total reclaimed space: \d/);
    expect((await t.run(['fsck'])).code).toBe(0);
    expect((await t.run(['inspect', 'base:1'])).code).toBe(0);
    // the base image still builds on after the prune
    expect((await t.run(['build', '-t', 'temp2', ctx])).code).toBe(0);
  });

  it('fsck finds a corrupted blob and exits 1', async () => {
    const layer = JSON.parse((await t.run(['inspect', 'base:1'])).stdout).Manifest.layers[0].digest as string;
    const file = path.join(t.root, 'blobs/sha256', layer.slice(7));
    const fh = await fsp.open(file, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 100);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, 100);
    await fh.close();
    const r = await t.run(['fsck']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(layer);
    expect(r.stderr).toMatch(/^Error: store .* is corrupt: \d+ problem\(s\)\n$/);
  });
});

describe('untagged images', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('a build without -t is listed as <none>, found by ID, and removed by rmi ID', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN echo untagged > /u\n' });
    const r = await t.run(['build', '-q', ctx]);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect((await t.run(['images'])).stdout).toMatch(new RegExp(`\\n<none>\\s+<none>\\s+${id.slice(0, 12)}\\s`));
    expect(JSON.parse((await t.run(['inspect', id.slice(0, 12)])).stdout).Names).toEqual([]);
    expect((await t.run(['rmi', id.slice(0, 12)])).stdout).toContain('Deleted: sha256:');
    expect((await t.run(['inspect', id])).code).toBe(1);
  });

  it('rebuilding a tag leaves the previous image as <none>', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN date +%N > /n\n' });
    const first = (await t.run(['build', '-q', '-t', 'moving', ctx])).stdout.trim();
    const second = (await t.run(['build', '-q', '--no-cache', '-t', 'moving', ctx])).stdout.trim();
    expect(second).not.toBe(first);
    const images = JSON.parse((await t.run(['images', '--format', 'json'])).stdout) as { name: string | null; id: string }[];
    expect(images.find((i) => i.id === `sha256:${first}`)?.name).toBeNull();
    expect(images.find((i) => i.id === `sha256:${second}`)?.name).toBe('docker.io/library/moving:latest');
  });
});

describe('prune and untagged images', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('--keep-untagged keeps them; a plain prune removes them like docker image prune', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN echo u > /u\n' });
    const id = (await t.run(['build', '-q', ctx])).stdout.trim();
    expect((await t.run(['prune', '--keep-untagged'])).stdout).not.toContain('deleted image');
    expect((await t.run(['inspect', id])).code).toBe(0);
    const r = await t.run(['prune']);
    expect(r.stdout).toMatch(/^deleted image sha256:[0-9a-f]{64}$/m);
    expect(r.stdout).toMatch(/deleted snapshot/);
    expect((await t.run(['inspect', id])).code).toBe(1);
    expect((await t.run(['inspect', 'busybox'])).code).toBe(0);
    expect((await t.run(['fsck'])).code).toBe(0);
  });
});

describe('load of a bad archive: one line, exit 1, nothing left in ingest/ and nothing named', () => {
  const t = new TestStore();
  let before: string;
  let whole: Buffer;
  beforeAll(async () => {
    await t.importBusybox();
    const file = path.join(t.tmp, 'whole.tar');
    expect((await t.run(['save', 'busybox', '-o', file, '--format', 'docker-archive'])).code).toBe(0);
    whole = await fsp.readFile(file);
  });
  afterAll(() => t.cleanup());

  /** An empty store to load into (the one that saved has every blob already). */
  const fresh = async () => {
    const s = new TestStore();
    const r = await s.run(['images', '--format', 'json']);
    expect(r.code).toBe(0);
    before = r.stdout;
    return s;
  };

  it.each([
    ['plain', (b: Buffer) => b],
    ['gzip', (b: Buffer) => gzipSync(b)],
  ])('a truncated %s archive', async (_kind, encode) => {
    const s = await fresh();
    try {
      const bytes = encode(whole);
      const cut = path.join(s.tmp, 'cut.tar');
      await fsp.writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
      const r = await s.run(['load', '-i', cut]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^Error: ${cut}: not a readable archive: [^\\n]+\\n$`));
      expect(await fsp.readdir(path.join(s.root, 'ingest'))).toEqual([]);
      expect((await s.run(['images', '--format', 'json'])).stdout).toBe(before);
    } finally {
      await s.cleanup();
    }
  });

  it.each([
    ['[null]', 'manifest.json: entry 0 is not an object'],
    ['{"Config":"c.json"}', 'manifest.json is not a list'],
    ['[{"Layers":[]}]', 'manifest.json: entry 0 has no Config path'],
    ['[{"Config":"c.json","Layers":[{}]}]', 'manifest.json: entry 0: Layers is not a list of paths'],
    ['[{"Config":"../c.json","Layers":[]}]', `manifest.json: entry 0: path "../c.json" has a '..' component`],
  ])('manifest.json %s', async (manifest, why) => {
    const s = await fresh();
    try {
      const dir = path.join(s.tmp, 'archive');
      await fsp.mkdir(dir);
      await fsp.writeFile(path.join(dir, 'c.json'), '{"rootfs":{"type":"layers","diff_ids":[]}}');
      await fsp.writeFile(path.join(dir, 'manifest.json'), manifest);
      const file = path.join(s.tmp, 'bad.tar');
      execFileSync('tar', ['-C', dir, '-cf', file, 'c.json', 'manifest.json']);
      const r = await s.run(['load', '-i', file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`Error: ${file}: ${why}\n`);
      expect((await s.run(['images', '--format', 'json'])).stdout).toBe(before);
    } finally {
      await s.cleanup();
    }
  });
});

describe('fsck finds what is corrupt beyond blobs; images keeps working', () => {
  /** A store with busybox and a built image (so there are committed snapshots). */
  async function storeWithSnapshots(): Promise<TestStore> {
    const t = new TestStore();
    await t.importBusybox();
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN echo x > /x\n' });
    expect((await t.run(['build', '-t', 'built', ctx])).code).toBe(0);
    expect((await t.run(['fsck'])).code).toBe(0);
    return t;
  }

  async function expectCorrupt(t: TestStore, line: RegExp): Promise<void> {
    const r = await t.run(['fsck']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(line);
    expect(r.stderr).toMatch(/^Error: store .* is corrupt: \d+ problem\(s\)\n$/);
  }

  it('a corrupt snapshots/metadata.json', async () => {
    const t = await storeWithSnapshots();
    try {
      await fsp.writeFile(path.join(t.root, 'snapshots/metadata.json'), '{"version":1,"nextId":');
      await expectCorrupt(t, /^snapshot: snapshot metadata .*metadata\.json is corrupt: .+$/m);
    } finally {
      await t.cleanup();
    }
  });

  it('a deleted snapshot directory', async () => {
    const t = await storeWithSnapshots();
    try {
      const ids = (await fsp.readdir(path.join(t.root, 'snapshots'))).filter((n) => /^\d+$/.test(n));
      expect(ids.length).toBeGreaterThan(0);
      await fsp.rm(path.join(t.root, 'snapshots', ids[0]!), { recursive: true });
      await expectCorrupt(t, new RegExp(`^snapshot: snapshot ".+": its directory .*/snapshots/${ids[0]}/fs is missing$`, 'm'));
    } finally {
      await t.cleanup();
    }
  });

  it("an image's config that does not parse: fsck names it, images lists the others", async () => {
    const t = await storeWithSnapshots();
    try {
      const id = JSON.parse((await t.run(['inspect', 'built'])).stdout).Id as string;
      // Rewritten in place with as many bytes (its descriptor's size still holds): the re-hash
      // finds it too, but the parse check must name the config.
      const file = path.join(t.root, 'blobs/sha256', id.slice('sha256:'.length));
      const { size } = await fsp.stat(file);
      await fsp.writeFile(file, `{"rootfs":${' '.repeat(size - 10)}`);
      await expectCorrupt(t, new RegExp(`^bad-json: config ${id} is not valid JSON`, 'm'));
      const r = await t.run(['images']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/\nbusybox\s+latest\s/);
      expect(r.stdout).toMatch(/\nbuilt\s+latest\s+[0-9a-f]{12}\s+N\/A\s/);
      expect(r.stderr).toMatch(/^Warning: image docker\.io\/library\/built:latest: [^\n]+\n$/);
    } finally {
      await t.cleanup();
    }
  });

  it('a manifest of the wrong shape: fsck names it, images leaves it out with a warning', async () => {
    const t = await storeWithSnapshots();
    try {
      const images = JSON.parse(await fsp.readFile(path.join(t.root, 'images.json'), 'utf8')) as { images: Record<string, { digest: string }> };
      const digest = images.images['docker.io/library/built:latest']!.digest;
      await fsp.writeFile(path.join(t.root, 'blobs/sha256', digest.slice('sha256:'.length)), '[null]');
      await expectCorrupt(t, new RegExp(`^bad-shape: manifest ${digest}: not a JSON object$`, 'm'));
      const r = await t.run(['images', '--format', 'json']);
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as { name: string }[]).map((i) => i.name)).toEqual(['docker.io/library/busybox:latest']);
      expect(r.stderr).toMatch(/^Warning: image docker\.io\/library\/built:latest: [^\n]+\(not listed; see: tsbuild fsck\)\n$/);
    } finally {
      await t.cleanup();
    }
  });
});
