import { execFileSync } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';
import { TestStore } from './harness.js';

interface Entry {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string; 'os.version'?: string; 'os.features'?: string[] };
  annotations?: Record<string, string>;
}
interface Index {
  mediaType: string;
  manifests: Entry[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** An image whose config says `arch[/variant]`: a working container from busybox, re-labelled (its files stay amd64). */
async function platformImage(t: TestStore, name: string, arch: string, variant?: string): Promise<string> {
  const ctr = (await t.run(['from', 'busybox'])).stdout.trim();
  expect((await t.run(['config', '--arch', arch, ...(variant ? ['--variant', variant] : []), ctr])).code).toBe(0);
  expect((await t.run(['commit', ctr, name])).code).toBe(0);
  expect((await t.run(['rm', ctr])).code).toBe(0);
  return JSON.parse((await t.run(['inspect', '--type', 'image', name])).stdout).Digest as string;
}

async function inspectList(t: TestStore, name: string): Promise<Index> {
  const r = await t.run(['manifest', 'inspect', name]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Index;
}

/** buildah on its own store in `root`; `insecure` (host:port) is an http registry it may use where it has no --tls-verify. */
function buildah(root: string, args: string[], insecure?: string): string {
  const conf: string[] = [];
  if (insecure !== undefined) {
    // buildah 1.28 reads --registries-conf (not CONTAINERS_REGISTRIES_CONF) for this.
    conf.push('--registries-conf', path.join(root, 'registries.conf'));
    writeFileSync(conf[1]!, `[[registry]]\nlocation = "${insecure}"\ninsecure = true\n`);
  }
  return execFileSync('buildah', [...conf, '--root', path.join(root, 'root'), '--runroot', path.join(root, 'run'), '--storage-driver', 'vfs', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('manifest verbs on local lists', () => {
  const t = new TestStore();
  let amd64: string;
  let arm64: string;
  beforeAll(async () => {
    await t.importBusybox();
    amd64 = await platformImage(t, 'img-amd64', 'amd64');
    arm64 = await platformImage(t, 'img-arm64', 'arm64', 'v8');
  }, 120_000);
  afterAll(() => t.cleanup());

  it('create, add, annotate, inspect, remove, exists and rm as buildah names and prints them', async () => {
    const created = await t.run(['manifest', 'create', 'mylist', 'img-amd64']);
    expect(created.stderr).toBe('');
    expect(created.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    let list = await inspectList(t, 'mylist');
    expect(list.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(list.manifests).toEqual([{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: amd64, size: expect.any(Number), platform: { architecture: 'amd64', os: 'linux' } }]);

    // add prints "<list ID>: <entry digest>", as buildah; the platform comes from the image's config
    const added = await t.run(['manifest', 'add', '--annotation', 'org.example=1', 'mylist', 'img-arm64']);
    expect(added.code).toBe(0);
    const listId = added.stdout.split(':')[0]!;
    expect(added.stdout).toBe(`${listId}: ${arm64}\n`);
    list = await inspectList(t, 'mylist');
    expect(list.manifests.map((m) => [m.digest, m.platform])).toEqual([
      [amd64, { architecture: 'amd64', os: 'linux' }],
      [arm64, { architecture: 'arm64', os: 'linux', variant: 'v8' }],
    ]);
    expect(list.manifests[1]!.annotations).toEqual({ 'org.example': '1' });
    // indented with four spaces, as buildah's json.MarshalIndent
    expect((await t.run(['manifest', 'inspect', 'mylist'])).stdout).toContain('\n    "manifests": [\n        {');
    expect(JSON.parse((await t.run(['inspect', '--type', 'manifest', 'mylist'])).stdout)).toEqual(list);

    // annotate by image name and by digest
    expect((await t.run(['manifest', 'annotate', '--os-version', '10.0.1', '--os-features', 'win32k', 'mylist', 'img-amd64'])).code).toBe(0);
    expect((await t.run(['manifest', 'annotate', '--variant', 'v9', '--annotation', 'b=2', 'mylist', arm64])).code).toBe(0);
    list = await inspectList(t, 'mylist');
    expect(list.manifests[0]!.platform).toEqual({ architecture: 'amd64', os: 'linux', 'os.version': '10.0.1', 'os.features': ['win32k'] });
    expect(list.manifests[1]!.platform).toEqual({ architecture: 'arm64', os: 'linux', variant: 'v9' });
    expect(list.manifests[1]!.annotations).toEqual({ 'org.example': '1', b: '2' });

    // images lists the list among the images, flagged in JSON; a changed list leaves no <none> behind
    const images = JSON.parse((await t.run(['images', '--format', 'json'])).stdout) as { name: string | null; manifestList: boolean }[];
    expect(images.filter((i) => i.manifestList).map((i) => i.name)).toEqual(['docker.io/library/mylist:latest']);
    expect(images.filter((i) => i.name === null)).toEqual([]);

    expect((await t.run(['manifest', 'exists', 'mylist'])).code).toBe(0);
    for (const absent of ['nolist', 'img-amd64']) {
      const r = await t.run(['manifest', 'exists', absent]);
      expect([r.code, r.stdout, r.stderr]).toEqual([1, '', '']);
    }

    const removed = await t.run(['manifest', 'remove', 'mylist', amd64]);
    expect(removed.stdout).toMatch(new RegExp(`^[0-9a-f]{64}: ${amd64}\n$`));
    expect((await inspectList(t, 'mylist')).manifests.map((m) => m.digest)).toEqual([arm64]);

    // --amend adds to the list of that name
    expect((await t.run(['manifest', 'create', '--amend', 'mylist', 'img-amd64'])).code).toBe(0);
    expect((await inspectList(t, 'mylist')).manifests.map((m) => m.digest)).toEqual([arm64, amd64]);
    // --all takes every image of a list given as IMAGE
    expect((await t.run(['manifest', 'create', '--all', 'copy', 'mylist'])).code).toBe(0);
    expect((await inspectList(t, 'copy')).manifests.map((m) => m.digest)).toEqual([arm64, amd64]);

    const rm = await t.run(['manifest', 'rm', 'mylist', 'copy']);
    expect(rm.stdout).toMatch(/^untagged: docker.io\/library\/mylist:latest\n[0-9a-f]{64}\nuntagged: docker.io\/library\/copy:latest\n[0-9a-f]{64}\n$/);
    expect((await t.run(['manifest', 'exists', 'mylist'])).code).toBe(1);
    // the images stay
    expect((await t.run(['inspect', '--type', 'image', 'img-amd64'])).code).toBe(0);
  });

  it('rmi of a list removes its name only; prune keeps its images; fsck is clean', async () => {
    expect((await t.run(['manifest', 'create', 'l2', 'img-amd64', 'img-arm64'])).code).toBe(0);
    expect((await t.run(['rmi', 'l2'])).code).toBe(0);
    expect((await t.run(['manifest', 'exists', 'l2'])).code).toBe(1);
    expect((await t.run(['inspect', '--type', 'image', 'img-arm64'])).code).toBe(0);
    expect((await t.run(['manifest', 'create', 'l3', 'img-amd64', 'img-arm64'])).code).toBe(0);
    expect((await t.run(['prune'])).code).toBe(0);
    expect((await inspectList(t, 'l3')).manifests).toHaveLength(2);
    const fsck = await t.run(['fsck']);
    expect(fsck.stdout).toMatch(/: 0 problem\(s\)\n$/);
    expect(fsck.code).toBe(0);
  });

  it('save of a list writes every platform into an oci-archive; load names the list again with the same digests', async () => {
    expect((await t.run(['manifest', 'create', 'saved', 'img-amd64', 'img-arm64'])).code).toBe(0);
    const before = await inspectList(t, 'saved');
    const listDigest = JSON.parse((await t.run(['inspect', '--type', 'image', 'saved'])).stdout).Digest as string;
    const archive = path.join(t.tmp, 'list.tar');
    const saved = await t.run(['save', '-o', archive, 'saved']);
    expect(saved.stderr).toBe('');
    expect(saved.code).toBe(0);
    // skopeo reads it as a multi-platform image, and copies every platform
    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci-archive:${archive}`], { encoding: 'utf8' })) as Index;
    expect(raw).toEqual(before);
    const oci = path.join(t.tmp, 'list-oci');
    execFileSync('skopeo', ['copy', '-q', '--all', `oci-archive:${archive}`, `oci:${oci}:x`]);
    const copied = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${oci}:x`], { encoding: 'utf8' })) as Index;
    expect(copied.manifests.map((m) => m.platform)).toEqual(before.manifests.map((m) => m.platform));

    const fresh = new TestStore();
    try {
      const loaded = await fresh.run(['load', '-i', archive]);
      expect(loaded.stdout).toBe('Loaded image: docker.io/library/saved:latest\n');
      expect(await inspectList(fresh, 'saved')).toEqual(before);
      expect(JSON.parse((await fresh.run(['inspect', '--type', 'image', 'saved'])).stdout).Digest).toBe(listDigest);
      const fsck = await fresh.run(['fsck']);
      expect(fsck.code).toBe(0);
      const archive2 = path.join(fresh.tmp, 'again.tar');
      expect((await fresh.run(['save', '-o', archive2, 'saved'])).code).toBe(0);
    } finally {
      await fresh.cleanup();
    }

    const docker = await t.run(['save', '--format', 'docker-archive', '-o', path.join(t.tmp, 'd.tar'), 'saved']);
    expect(docker.code).toBe(1);
    expect(docker.stderr).toBe('Error: saved is a manifest list: a docker-archive holds single images (use --format oci-archive)\n');
    await expect(fsp.stat(path.join(t.tmp, 'd.tar'))).rejects.toThrow();
  });

  it('bad input is one line naming what and where, and changes nothing', async () => {
    expect((await t.run(['manifest', 'create', 'bad', 'img-amd64'])).code).toBe(0);
    const before = (await t.run(['manifest', 'inspect', 'bad'])).stdout;
    const cases: [string[], string, number][] = [
      [['manifest', 'inspect', 'nolist'], 'Error: manifest list nolist is not known\n', 1],
      [['manifest', 'add', 'nolist', 'img-arm64'], 'Error: manifest list nolist is not known\n', 1],
      [['manifest', 'inspect', 'img-amd64'], 'Error: img-amd64 is an image, not a manifest list\n', 1],
      [['manifest', 'remove', 'bad', `sha256:${'0'.repeat(64)}`], `Error: manifest list bad has no entry sha256:${'0'.repeat(64)}\n`, 1],
      [['manifest', 'annotate', '--arch', 'x', 'bad', 'img-arm64'], expect.stringMatching(/^Error: manifest list bad has no entry sha256:[0-9a-f]{64} \(img-arm64\)\n$/) as unknown as string, 1],
      [['manifest', 'add', '--arch', 'arm/64', 'bad', 'img-arm64'], 'Error: invalid --arch "arm/64": want a single word such as arm64\n', 1],
      [['manifest', 'add', '--os', '', 'bad', 'img-arm64'], 'Error: invalid --os "": want a single word such as linux\n', 1],
      [['manifest', 'add', '--annotation', 'novalue', 'bad', 'img-arm64'], 'Error: invalid --annotation "novalue": want KEY=VALUE\n', 1],
      [['manifest', 'add', 'bad', 'noimage'], 'Error: image not known: noimage\n', 1],
      [['manifest', 'create', 'bad'], 'Error: manifest list docker.io/library/bad:latest already exists (add --amend to change it)\n', 1],
      [['manifest', 'create', 'img-amd64'], 'Error: docker.io/library/img-amd64:latest names an image, not a manifest list\n', 1],
      [['manifest', 'rm', 'bad', 'nolist'], 'Error: manifest list nolist is not known\n', 1],
      [['manifest', 'frob'], 'Error: manifest: unknown verb "frob": want one of create, add, annotate, inspect, remove, rm, exists, push (see: tsbuild manifest --help)\n', 2],
      [['pull', '--all-platforms', '--platform', 'linux/arm64', '127.0.0.1:1/x'], 'Error: --platform and --all-platforms exclude each other\n', 1],
    ];
    for (const [args, stderr, code] of cases) {
      const r = await t.run(args);
      expect({ args, stderr: r.stderr, code: r.code, stdout: r.stdout }).toEqual({ args, stderr, code, stdout: '' });
    }
    expect((await t.run(['manifest', 'inspect', 'bad'])).stdout).toBe(before);
    const help = await t.run(['manifest', 'push', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('$ tsbuild manifest push LIST [DESTINATION] [FLAGS]');
    expect(help.stdout).toContain('--digestfile');
  });
});

describe('manifest lists through a real registry, read and written by buildah and skopeo', () => {
  const t = new TestStore();
  let reg: RunningRegistry;
  let amd64: string;
  let arm64: string;
  beforeAll(async () => {
    reg = await startRegistry();
    await t.importBusybox();
    amd64 = await platformImage(t, 'img-amd64', 'amd64');
    arm64 = await platformImage(t, 'img-arm64', 'arm64', 'v8');
  }, 120_000);
  afterAll(async () => {
    await reg.stop();
    await t.cleanup();
  });

  it('manifest push --all: skopeo reads both platforms, skopeo copy --all copies them, buildah pulls the arm64 image', async () => {
    expect((await t.run(['manifest', 'create', 'multi', 'img-amd64', 'img-arm64'])).code).toBe(0);
    const dest = `127.0.0.1:${reg.port}/demo/multi:1`;
    const digestfile = path.join(t.tmp, 'digest');
    const pushed = await t.run(['manifest', 'push', '--all', '-q', '--tls-verify=false', '--digestfile', digestfile, 'multi', `docker://${dest}`]);
    expect(pushed.stderr).toBe('');
    expect(pushed.code).toBe(0);
    const digest = pushed.stdout.trim();
    expect(digest).toMatch(DIGEST);
    expect(await fsp.readFile(digestfile, 'utf8')).toBe(digest);

    const raw = execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest}`], { encoding: 'utf8' });
    const index = JSON.parse(raw) as Index;
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests.map((m) => m.platform)).toEqual([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux', variant: 'v8' }]);
    // the pushed images are the local ones with their layers compressed: same config, so same image ID
    for (const [i, local] of [amd64, arm64].entries()) {
      const m = index.manifests[i]!;
      const child = execFileSync('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://127.0.0.1:${reg.port}/demo/multi@${m.digest}`], { encoding: 'utf8' });
      expect(`sha256:${(await import('node:crypto')).createHash('sha256').update(child).digest('hex')}`).toBe(m.digest);
      const localId = JSON.parse((await t.run(['inspect', '--type', 'image', local])).stdout).Id as string;
      expect((JSON.parse(child) as { config: { digest: string } }).config.digest).toBe(localId);
    }
    const oci = path.join(t.tmp, 'copied');
    execFileSync('skopeo', ['copy', '-q', '--all', '--src-tls-verify=false', `docker://${dest}`, `oci:${oci}:x`]);
    expect((JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${oci}:x`], { encoding: 'utf8' })) as Index).manifests.map((m) => m.digest)).toEqual(index.manifests.map((m) => m.digest));

    const bh = await fsp.mkdtemp(path.join(t.tmp, 'buildah-'));
    const viaBuildah = JSON.parse(buildah(bh, ['manifest', 'inspect', dest], `127.0.0.1:${reg.port}`)) as Index;
    expect(viaBuildah.manifests.map((m) => m.digest)).toEqual(index.manifests.map((m) => m.digest));
    buildah(bh, ['pull', '-q', '--tls-verify=false', '--platform', 'linux/arm64', `docker://${dest}`]);
    expect(buildah(bh, ['inspect', '--type', 'image', '--format', '{{.OCIv1.Architecture}}/{{.OCIv1.Variant}}', dest]).trim()).toBe('arm64/v8');

    // push of the list name itself does the same (buildah's manifest push --all); --format v2s2 makes a Docker list
    const v2 = await t.run(['manifest', 'push', '--all', '-q', '--format', 'v2s2', '--tls-verify=false', 'multi', `${dest}-docker`]);
    expect(v2.code).toBe(0);
    const dockerList = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest}-docker`], { encoding: 'utf8' })) as Index;
    expect(dockerList.mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    expect(dockerList.manifests.map((m) => m.mediaType)).toEqual(Array(2).fill('application/vnd.docker.distribution.manifest.v2+json'));
    const plain = await t.run(['push', '-q', '--tls-verify=false', 'multi', `127.0.0.1:${reg.port}/demo/plainpush:1`]);
    expect(plain.code).toBe(0);
    expect((JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://127.0.0.1:${reg.port}/demo/plainpush:1`], { encoding: 'utf8' })) as Index).manifests.map((m) => m.digest)).toEqual(index.manifests.map((m) => m.digest));

    // --rm removes the list once pushed
    expect((await t.run(['manifest', 'create', 'gone', 'img-amd64'])).code).toBe(0);
    expect((await t.run(['manifest', 'push', '--all', '--rm', '-q', '--tls-verify=false', 'gone', `${dest}-gone`])).code).toBe(0);
    expect((await t.run(['manifest', 'exists', 'gone'])).code).toBe(1);
  });

  it('a list made and pushed by buildah is read by manifest inspect docker:// and pull --all-platforms', async () => {
    const bh = await fsp.mkdtemp(path.join(t.tmp, 'buildah-'));
    const a = buildah(bh, ['from', 'scratch']).trim();
    buildah(bh, ['config', '--arch', 'arm64', '--variant', 'v8', a]);
    buildah(bh, ['commit', '-q', a, 'bh-arm64']);
    const b = buildah(bh, ['from', 'scratch']).trim();
    buildah(bh, ['commit', '-q', b, 'bh-amd64']);
    buildah(bh, ['manifest', 'create', 'bhlist']);
    buildah(bh, ['manifest', 'add', 'bhlist', 'bh-amd64']);
    buildah(bh, ['manifest', 'add', 'bhlist', 'bh-arm64']);
    const dest = `127.0.0.1:${reg.port}/demo/bhlist:1`;
    buildah(bh, ['manifest', 'push', '-q', '--all', '--tls-verify=false', 'bhlist', `docker://${dest}`]);
    const remote = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest}`], { encoding: 'utf8' })) as Index;

    const inspected = await t.run(['manifest', 'inspect', '--tls-verify=false', `docker://${dest}`]);
    expect(inspected.code).toBe(0);
    expect(JSON.parse(inspected.stdout)).toEqual(remote);

    const fresh = new TestStore();
    try {
      const pulled = await fresh.run(['pull', '-q', '--all-platforms', '--tls-verify=false', dest]);
      expect(pulled.stderr).toBe('');
      expect(pulled.code).toBe(0);
      expect(await inspectList(fresh, dest)).toEqual(remote);
      const images = JSON.parse((await fresh.run(['images', '--format', 'json'])).stdout) as { name: string; manifestList: boolean }[];
      expect(images).toEqual([expect.objectContaining({ name: dest, manifestList: true })]);
      // every platform's image is in the store: the list saves, and survives a prune
      expect((await fresh.run(['prune'])).code).toBe(0);
      expect((await fresh.run(['save', '-o', path.join(fresh.tmp, 'all.tar'), dest])).code).toBe(0);
      expect((await fresh.run(['fsck'])).code).toBe(0);
      // pull keeps picking the host's platform, --platform another
      const host = await fresh.run(['pull', '-q', '--tls-verify=false', dest]);
      expect(JSON.parse((await fresh.run(['inspect', '--type', 'image', host.stdout.trim()])).stdout).Config.architecture).toBe('amd64');
      const arm = await fresh.run(['pull', '-q', '--tls-verify=false', '--platform', 'linux/arm64', dest]);
      expect(JSON.parse((await fresh.run(['inspect', '--type', 'image', dest])).stdout).Config.architecture).toBe('arm64');
      expect(arm.code).toBe(0);
    } finally {
      await fresh.cleanup();
    }
  });

  it('manifest add docker://REF records the registry\'s digest without pulling; fsck accepts the entry; push leaves it to the registry', async () => {
    const src = `127.0.0.1:${reg.port}/demo/remote:1`;
    expect((await t.run(['push', '-q', '--tls-verify=false', 'img-arm64', src])).code).toBe(0);
    const srcDigest = execFileSync('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${src}`], { encoding: 'utf8' }).trim();

    const fresh = new TestStore();
    try {
      expect((await fresh.run(['manifest', 'create', 'rl'])).code).toBe(0);
      const added = await fresh.run(['manifest', 'add', '--tls-verify=false', '--annotation', 'k=v', 'rl', `docker://${src}`]);
      expect(added.stderr).toBe('');
      expect(added.stdout).toMatch(new RegExp(`^[0-9a-f]{64}: ${srcDigest}\n$`));
      const list = await inspectList(fresh, 'rl');
      expect(list.manifests).toEqual([{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: srcDigest, size: expect.any(Number), platform: { architecture: 'arm64', os: 'linux', variant: 'v8' }, annotations: { k: 'v' } }]);
      // nothing was pulled: only the list is in the store
      expect(JSON.parse((await fresh.run(['images', '--format', 'json'])).stdout)).toHaveLength(1);
      const fsck = await fresh.run(['fsck']);
      expect(fsck.stdout).toMatch(/: 0 problem\(s\)\n$/);
      expect(fsck.code).toBe(0);
      // a list whose image is only in the registry cannot be saved
      const saved = await fresh.run(['save', '-o', path.join(fresh.tmp, 'x.tar'), 'rl']);
      expect(saved.stderr).toBe(`Error: cannot save manifest list rl: its image ${srcDigest} (linux/arm64) is not in the store (added from docker://${src}; pull it first)\n`);
      // pushed to the repository that has the image, the list is accepted as it is
      const pushed = await fresh.run(['manifest', 'push', '--all', '-q', '--tls-verify=false', 'rl', `127.0.0.1:${reg.port}/demo/remote:list`]);
      expect(pushed.stderr).toBe('');
      expect(pushed.code).toBe(0);
      const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://127.0.0.1:${reg.port}/demo/remote:list`], { encoding: 'utf8' })) as Index;
      expect(raw.manifests.map((m) => m.digest)).toEqual([srcDigest]);
      // elsewhere the registry refuses it, and says so in one line
      const refused = await fresh.run(['manifest', 'push', '-q', '--tls-verify=false', 'rl', `127.0.0.1:${reg.port}/demo/elsewhere:list`]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^Error: .*MANIFEST_BLOB_UNKNOWN|^Error: .*manifest blob unknown/i);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      // the unknown registry reference is one line too
      const unknown = await fresh.run(['manifest', 'add', '--tls-verify=false', 'rl', `docker://127.0.0.1:${reg.port}/demo/nothing:1`]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
      expect(unknown.stderr).toContain('demo/nothing');
      expect((await inspectList(fresh, 'rl')).manifests).toHaveLength(1);
    } finally {
      await fresh.cleanup();
    }
  });
});
