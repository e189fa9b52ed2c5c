// The working-container verbs (issue 16): from, containers, run, copy, add, commit, mount, umount,
// rm, rename and inspect as buildah spells them, and the state behind them (records that outlive
// the process, one lock per container, prune, kill -9), as root against the real kernel.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { IMAGE_ID_LINE, type Result, TestStore, mountsUnder, processesMatching } from './harness.js';

interface ContainerRow {
  id: string;
  builder: boolean;
  imageid: string;
  imagename: string;
  containername: string;
}

interface ImageInspect {
  Id: string;
  Manifest: { mediaType?: string; layers: { mediaType: string; digest: string; size: number }[] };
  Config: { created?: string; config?: { Env?: string[] }; rootfs: { diff_ids: string[] }; history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[] };
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** One line on stderr, starting "Error:", and exit status 1. */
function expectOneLineError(r: Result, pattern: RegExp): void {
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^Error: /);
  expect(r.stderr).toMatch(pattern);
  expect(r.code).toBe(1);
}

function mountinfoHas(p: string): boolean {
  return spawnSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' }).stdout.split('\n').some((l) => l.split(' ')[4] === p);
}

describe('working containers', () => {
  const t = new TestStore();

  /** Runs tsbuild, expects success, returns stdout trimmed. */
  async function ok(args: string[], opts: { cwd?: string } = {}): Promise<string> {
    const r = await t.run(args, opts);
    if (r.code !== 0) throw new Error(`tsbuild ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout.trim();
  }
  const containers = async (): Promise<ContainerRow[]> => JSON.parse(await ok(['containers', '--format', 'json'])) as ContainerRow[];
  const image = async (name: string): Promise<ImageInspect> => JSON.parse(await ok(['inspect', '--type', 'image', name])) as ImageInspect;
  /** The entries of a stored layer blob, as `tar -tv` lists them. */
  const layerEntries = (digest: string, gzip = false): string[] => {
    const r = spawnSync('tar', [gzip ? '-tvzf' : '-tvf', path.join(t.root, 'blobs', 'sha256', digest.replace(/^sha256:/, '')), '--full-time', '--numeric-owner'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    return r.stdout.trim().split('\n').filter((l) => l !== '');
  };
  const names = (entries: string[]): string[] => entries.map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\.\//, '').replace(/ -> .*$/, '').replace(/\/$/, '')).sort();
  /** `stat` of paths inside a container: "path uid:gid mode type". */
  const statIn = async (ctr: string, ...paths: string[]): Promise<string[]> =>
    (await ok(['run', ctr, '--', 'stat', '-c', '%n %u:%g %a %F', ...paths])).split('\n');

  beforeAll(() => t.importBusybox());
  afterAll(async () => {
    await t.run(['rm', '--all']);
    await t.cleanup();
  });

  describe('from and containers', () => {
    it("names containers as buildah does (busybox-working-container, -1, -2; scratch: working-container) and --name", async () => {
      const a = await ok(['from', 'busybox']);
      const b = await ok(['from', 'busybox']);
      const c = await ok(['from', 'docker.io/library/busybox:latest']);
      const s = await ok(['from', 'scratch']);
      const n = await ok(['from', '--name', 'my-build', 'busybox']);
      expect([a, b, c, s, n]).toEqual(['busybox-working-container', 'busybox-working-container-1', 'busybox-working-container-2', 'working-container', 'my-build']);
      const busyboxId = (await image('busybox')).Id.replace(/^sha256:/, '');
      const rows = await containers();
      expect(rows.find((r) => r.containername === 'my-build')).toMatchObject({ builder: true, imageid: busyboxId, imagename: 'busybox' });
      expect(rows.find((r) => r.containername === 'working-container')).toMatchObject({ imageid: '', imagename: 'scratch' });
      expect(await ok(['rm', a, b, c, s, n])).toMatch(/^([0-9a-f]{64}\n){4}[0-9a-f]{64}$/);
    });

    it('a name already in use, an invalid name, an unknown image with --pull=never: one line, exit 1, nothing made', async () => {
      const a = await ok(['from', '--name', 'taken', 'busybox']);
      const before = await containers();
      expectOneLineError(await t.run(['from', '--name', 'taken', 'busybox']), /the container name "taken" is already in use/);
      expectOneLineError(await t.run(['from', '--name', '-bad', 'busybox']), /invalid container name "-bad"/);
      expectOneLineError(await t.run(['from', '--pull=never', 'nosuchimage']), /nosuchimage.*not known in the local store/);
      // Not in the store, and nothing answers at that registry: the pull's failure, naming the image.
      expectOneLineError(await t.run(['from', '127.0.0.1:9/nosuch:1']), /^Error: image 127\.0\.0\.1:9\/nosuch:1: not in the local store, and pulling it failed: /);
      expectOneLineError(await t.run(['run', 'neither-container-nor-image', '--', 'true']), /no working container or image named neither-container-nor-image/);
      expectOneLineError(await t.run(['from', '--pull=sometimes', 'busybox']), /--pull=sometimes/);
      expect(await containers()).toEqual(before);
      await ok(['rm', a]);
    });

    it('containers: table, --noheading, --quiet, --notruncate, --all, --json and --format json', async () => {
      const ctr = await ok(['from', 'busybox']);
      const row = (await containers()).find((r) => r.containername === ctr)!;
      expect(row.id).toMatch(/^[0-9a-f]{64}$/);
      const table = (await ok(['containers'])).split('\n');
      expect(table[0]).toMatch(/^CONTAINER ID\s+BUILDER\s+IMAGE ID\s+IMAGE NAME\s+CONTAINER NAME$/);
      expect(table).toContainEqual(expect.stringMatching(new RegExp(`^${row.id.slice(0, 12)}\\s+\\*\\s+${row.imageid.slice(0, 12)}\\s+busybox\\s+${ctr}$`)));
      const cells = (text: string) => text.split('\n').map((l) => l.split(/\s+/));
      const noheading = (await ok(['containers', '--noheading'])).split('\n');
      expect(cells(noheading.join('\n'))).toEqual(cells(table.slice(1).join('\n')));
      expect((await ok(['containers', '--quiet'])).split('\n')).toContain(row.id.slice(0, 12));
      expect((await ok(['containers', '-q', '--notruncate'])).split('\n')).toContain(row.id);
      expect(cells(await ok(['containers', '--all', '--noheading']))).toEqual(cells(noheading.join('\n')));
      expect(JSON.parse(await ok(['containers', '--json']))).toEqual(await containers());
      expect((await t.run(['containers', '--format', 'yaml'])).code).not.toBe(0);
      await ok(['rm', ctr]);
    });
  });

  describe('from a registry', () => {
    let reg: RunningRegistry;
    beforeAll(async () => {
      reg = await startRegistry();
    });
    afterAll(() => reg.stop());

    it('--pull=never refuses, missing pulls once, always pulls again (a new image under the same tag)', async () => {
      const ref = `127.0.0.1:${reg.port}/library/busybox:latest`;
      await ok(['push', '--tls-verify=false', '-q', 'busybox', ref]);
      const oldId = (await image('busybox')).Id.replace(/^sha256:/, '');
      const fresh = new TestStore();
      try {
        const run = async (args: string[]) => fresh.run(args);
        expectOneLineError(await run(['from', '--pull=never', ref]), /not known in the local store/);
        const a = await run(['from', '--tls-verify=false', ref]);
        expect(a.stderr).toBe('');
        expect(a.stdout).toBe('busybox-working-container\n');
        // a new image under the same tag: missing keeps the stored one, always fetches it
        const ctr = await ok(['from', 'busybox']);
        await ok(['run', ctr, '--', 'sh', '-c', 'echo v2 > /v2']);
        await ok(['commit', '-q', '--rm', ctr, 'busybox-v2']);
        const newId = (await image('busybox-v2')).Id.replace(/^sha256:/, '');
        await ok(['push', '--tls-verify=false', '-q', 'busybox-v2', ref]);
        const b = await run(['from', '--pull=missing', '--tls-verify=false', ref]);
        const c = await run(['from', '--pull=always', '--tls-verify=false', ref]);
        expect([b.code, c.code]).toEqual([0, 0]);
        expect([b.stdout, c.stdout]).toEqual(['busybox-working-container-1\n', 'busybox-working-container-2\n']);
        const rows = JSON.parse((await run(['containers', '--json'])).stdout) as ContainerRow[];
        expect(rows.map((r) => r.imageid)).toEqual([oldId, oldId, newId]);
        const v2 = await run(['run', 'busybox-working-container-2', '--', 'cat', '/v2']);
        expect(v2.stdout).toBe('v2\n');
      } finally {
        await fresh.run(['rm', '--all']);
        await fresh.cleanup();
      }
    });
  });

  describe('run', () => {
    it('run CONTAINER -- CMD keeps its changes for the next run and the commit; run IMAGE stays podman-style', async () => {
      const ctr = await ok(['from', 'busybox']);
      await ok(['run', ctr, '--', 'sh', '-c', 'echo one > /state; rm /bin/true']);
      expect(await ok(['run', ctr, '--', 'cat', '/state'])).toBe('one');
      // the config's Env and the flags apply; the exit status is the command's
      const r = await t.run(['run', '-e', 'X=1', '--workingdir', '/tmp', ctr, '--', 'sh', '-c', 'echo $X $(pwd) $PATH; exit 3']);
      expect(r.stdout).toBe('1 /tmp /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
      expect(r.code).toBe(3);
      const id = await ok(['commit', '-q', ctr, 'run-kept']);
      expect(id).toMatch(IMAGE_ID_LINE);
      // run IMAGE: a new container from the image, as podman run; the working container is not touched
      expect(await ok(['run', '--rm', 'run-kept', 'cat', '/state'])).toBe('one');
      expect((await t.run(['run', '--rm', 'run-kept', 'ls', '/bin/true'])).code).not.toBe(0);
      const before = await containers();
      await ok(['run', '--rm', 'busybox', 'sh', '-c', 'echo image > /state']);
      expect(await containers()).toEqual(before);
      expect(await ok(['run', ctr, '--', 'cat', '/state'])).toBe('one');
      // --rm and --entrypoint are for images
      expectOneLineError(await t.run(['run', '--rm', ctr, '--', 'true']), /is a working container: --rm, --entrypoint and --volume apply to images only/);
      await ok(['rm', ctr]);
    });

    it('run starts its container before it reads the store: the settings `from` recorded still win, and a failed lookup leaves nothing', async () => {
      // `tsbuild run` starts the runtime's helper from its flags alone (WorkingContainer.startRun);
      // a container made with `from --network none` must still get no network, not the host's.
      const ctr = await ok(['from', '--network', 'none', 'busybox']);
      expect(await ok(['run', ctr, '--', 'sh', '-c', "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"])).toBe('lo');
      expect(await ok(['run', '--pids-limit', '20', ctr, '--', 'sh', '-c', "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"])).toBe('lo');
      await ok(['rm', ctr]);
      // No such container or image: the started run is let go, its scratch directory with it.
      expectOneLineError(await t.run(['run', 'ghost-of-a-run', '--', 'true']), /ghost-of-a-run/);
      expect((await fsp.readdir(path.join(t.root, 'tmp'))).filter((n) => n.startsWith('run-'))).toEqual([]);
    });
  });

  describe('copy and add', () => {
    let http: Server;
    let port = 0;
    const served = Buffer.from('downloaded content\n');
    beforeAll(async () => {
      http = createServer((_req, res) => res.end(served));
      await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
      port = (http.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((r) => http.close(() => r())));

    it('copy of host paths with --chown and --chmod; names looked up in the container', async () => {
      const ctx = await t.context({ 'a.txt': 'a\n', 'dir/b.txt': 'b\n', 'dir/sub/c.txt': 'c\n' });
      const ctr = await ok(['from', 'busybox']);
      await ok(['copy', ctr, path.join(ctx, 'a.txt'), '/app/']);
      await ok(['copy', '--chown', 'app:app', '--chmod', '640', ctr, 'dir', '/owned'], { cwd: ctx });
      expect(await statIn(ctr, '/app/a.txt', '/owned/b.txt', '/owned/sub/c.txt')).toEqual([
        '/app/a.txt 0:0 644 regular file',
        '/owned/b.txt 1000:1000 640 regular file',
        '/owned/sub/c.txt 1000:1000 640 regular file',
      ]);
      expect(await ok(['run', ctr, '--', 'cat', '/owned/sub/c.txt'])).toBe('c');
      expectOneLineError(await t.run(['copy', ctr, path.join(ctx, 'missing.txt'), '/x']), /COPY source .*missing\.txt: no such file or directory on this machine\n$/);
      expectOneLineError(await t.run(['copy', '--contextdir', ctx, ctr, 'missing.txt', '/x']), new RegExp(`COPY source missing\\.txt: no such file or directory in ${ctx}\\n$`));
      await ok(['rm', ctr]);
    });

    it('copy --from another working container (as it is now) and --from an image', async () => {
      const src = await ok(['from', 'busybox']);
      await ok(['run', src, '--', 'sh', '-c', 'mkdir -p /out && echo built > /out/artifact && chmod 755 /out/artifact']);
      const ctr = await ok(['from', 'busybox']);
      await ok(['copy', '--from', src, ctr, '/out/artifact', '/usr/local/bin/']);
      await ok(['copy', '--from', 'busybox', '--chown', '1000:1000', ctr, '/etc/passwd', '/copied-passwd']);
      expect(await statIn(ctr, '/usr/local/bin/artifact', '/copied-passwd')).toEqual(['/usr/local/bin/artifact 0:0 755 regular file', '/copied-passwd 1000:1000 644 regular file']);
      expect(await ok(['run', ctr, '--', 'cat', '/usr/local/bin/artifact'])).toBe('built');
      expectOneLineError(await t.run(['copy', '--from', 'no-such-thing', ctr, '/x', '/y']), /no-such-thing/);
      await ok(['rm', src, ctr]);
    });

    it('copy --contextdir with its .dockerignore, or --ignorefile', async () => {
      const ctx = await t.context({ 'keep.txt': 'k\n', 'skip.log': 'no\n', 'other.tmp': 'o\n', '.dockerignore': '*.log\n', 'my.ignore': '*.tmp\n' });
      const ctr = await ok(['from', 'busybox']);
      await ok(['copy', '--contextdir', ctx, ctr, '.', '/ctx/']);
      await ok(['copy', '--contextdir', ctx, '--ignorefile', path.join(ctx, 'my.ignore'), ctr, '.', '/ctx2/']);
      expect((await ok(['run', ctr, '--', 'ls', '-A', '/ctx'])).split('\n').sort()).toEqual(['.dockerignore', 'keep.txt', 'my.ignore', 'other.tmp']);
      expect((await ok(['run', ctr, '--', 'ls', '-A', '/ctx2'])).split('\n').sort()).toEqual(['.dockerignore', 'keep.txt', 'my.ignore', 'skip.log']);
      expectOneLineError(await t.run(['copy', '--ignorefile', path.join(ctx, 'my.ignore'), ctr, path.join(ctx, 'keep.txt'), '/x']), /--ignorefile needs --contextdir/);
      await ok(['rm', ctr]);
    });

    it('add unpacks a local tar and fetches a URL (--checksum checked); copy does neither', async () => {
      const ctx = await t.context({ 'tree/x/y.txt': 'inside the tar\n' });
      expect(spawnSync('tar', ['-czf', path.join(ctx, 'tree.tar.gz'), '-C', path.join(ctx, 'tree'), '.']).status).toBe(0);
      const ctr = await ok(['from', 'busybox']);
      await ok(['add', ctr, path.join(ctx, 'tree.tar.gz'), '/unpacked/']);
      await ok(['copy', ctr, path.join(ctx, 'tree.tar.gz'), '/copied/']);
      expect(await ok(['run', ctr, '--', 'cat', '/unpacked/x/y.txt'])).toBe('inside the tar');
      expect(await ok(['run', ctr, '--', 'ls', '/copied'])).toBe('tree.tar.gz');
      const sum = `sha256:${createHash('sha256').update(served).digest('hex')}`;
      await ok(['add', '--checksum', sum, ctr, `http://127.0.0.1:${port}/file.txt`, '/dl/']);
      expect(await ok(['run', ctr, '--', 'cat', '/dl/file.txt'])).toBe('downloaded content');
      const bad = await t.run(['add', '--checksum', `sha256:${'0'.repeat(64)}`, ctr, `http://127.0.0.1:${port}/other.txt`, '/dl/']);
      expectOneLineError(bad, /checksum|digest/i);
      // A checksum checks a download only: with a local source it is refused, not ignored (BuildKit).
      expectOneLineError(await t.run(['add', '--checksum', sum, ctr, path.join(ctx, 'tree.tar.gz'), '/x/']), /ADD --checksum=.*only an http\(s\) source can be checked/);
      expect((await t.run(['run', ctr, '--', 'ls', '/dl/other.txt'])).code).not.toBe(0);
      await ok(['rm', ctr]);
    });

    it('--add-history (run, copy, add) records the steps in the next commit\'s history', async () => {
      const ctx = await t.context({ 'h.txt': 'h\n' });
      const ctr = await ok(['from', 'busybox']);
      await ok(['run', '--add-history', ctr, '--', 'touch', '/ran']);
      await ok(['copy', '--add-history', ctr, path.join(ctx, 'h.txt'), '/h.txt']);
      await ok(['copy', ctr, path.join(ctx, 'h.txt'), '/not-recorded.txt']);
      await ok(['commit', '-q', '--rm', ctr, 'with-history']);
      const hist = (await image('with-history')).Config.history!;
      const base = (await image('busybox')).Config.history!;
      expect(hist).toHaveLength(base.length + 3);
      expect(hist.slice(base.length).map((h) => [h.created_by, h.empty_layer === true])).toEqual([
        ['/bin/sh -c touch /ran', true],
        [`/bin/sh -c #(nop) COPY ${path.join(ctx, 'h.txt')} /h.txt`, true],
        ['/bin/sh', false],
      ]);
    });
  });

  describe('commit', () => {
    it('two commits in a row: the base layers plus ONE new layer holding all changes so far', async () => {
      const base = await image('busybox');
      const ctr = await ok(['from', 'busybox']);
      await ok(['run', ctr, '--', 'sh', '-c', 'echo 1 > /first']);
      await ok(['commit', '-q', ctr, 'step1']);
      await ok(['run', ctr, '--', 'sh', '-c', 'echo 2 > /second; rm /first']);
      await ok(['commit', '-q', ctr, 'step2']);
      const [s1, s2] = [await image('step1'), await image('step2')];
      for (const img of [s1, s2]) {
        expect(img.Manifest.layers).toHaveLength(base.Manifest.layers.length + 1);
        expect(img.Manifest.layers.slice(0, -1)).toEqual(base.Manifest.layers);
        expect(img.Config.history).toHaveLength(base.Config.history!.length + 1);
        // as buildah 1.28 writes the layer's history entry
        expect(img.Config.history!.at(-1)).toMatchObject({ created_by: '/bin/sh', comment: 'FROM docker.io/library/busybox:latest' });
      }
      expect(names(layerEntries(s1.Manifest.layers.at(-1)!.digest))).toEqual(['first']);
      // the second layer is against the base, not against step1: /first never existed there, so no whiteout
      expect(names(layerEntries(s2.Manifest.layers.at(-1)!.digest))).toEqual(['second']);
      expect(await ok(['run', '--rm', 'step2', 'sh', '-c', 'cat /second; ls /first 2>&1 || true'])).toMatch(/^2\nls: \/first: No such file or directory$/);
      await ok(['rm', ctr]);
    });

    it('--format docker, --disable-compression=false, --timestamp, --iidfile, -q, --omit-history, --squash and --rm', async () => {
      const ctr = await ok(['from', 'busybox']);
      await ok(['run', ctr, '--', 'sh', '-c', 'echo x > /x']);
      const docker = await t.run(['commit', '--format', 'docker', ctr, 'fmt-docker']);
      expect(docker.code).toBe(0);
      expect(docker.stderr).toBe('Writing manifest to image destination\n');
      expect(docker.stdout.trim()).toMatch(IMAGE_ID_LINE);
      expect((await image('fmt-docker')).Manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
      const quiet = await t.run(['commit', '-q', ctr, 'fmt-oci']);
      expect(quiet.stderr).toBe('');
      const oci = await image('fmt-oci');
      expect(oci.Manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
      expect(oci.Manifest.layers.at(-1)!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
      const gz = await image(await ok(['commit', '-q', '--disable-compression=false', ctr]));
      expect(gz.Manifest.layers.at(-1)!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
      expect(names(layerEntries(gz.Manifest.layers.at(-1)!.digest, true))).toEqual(['x']);
      const iid = path.join(t.tmp, 'iid');
      const ts = await ok(['commit', '-q', '--timestamp', '0', '--iidfile', iid, ctr, 'at-epoch']);
      expect(await fsp.readFile(iid, 'utf8')).toBe(`sha256:${ts}`);
      const epoch = await image('at-epoch');
      expect(epoch.Config.created).toBe('1970-01-01T00:00:00.000Z');
      expect(epoch.Config.history!.at(-1)!.created).toBe('1970-01-01T00:00:00.000Z');
      expect(layerEntries(epoch.Manifest.layers.at(-1)!.digest).every((l) => l.includes(' 1970-01-01 00:00:00 '))).toBe(true);
      // --timestamp makes the commit reproducible
      expect(await ok(['commit', '-q', '--timestamp', '0', ctr])).toBe(ts);
      expect((await image(await ok(['commit', '-q', '--omit-history', ctr]))).Config.history).toBeUndefined();
      const squashed = await image(await ok(['commit', '-q', '--squash', '--rm', ctr, 'squashed']));
      expect(squashed.Manifest.layers).toHaveLength(1);
      expect(names(layerEntries(squashed.Manifest.layers[0]!.digest))).toEqual(expect.arrayContaining(['bin/busybox', 'etc/passwd', 'x']));
      expect((await containers()).map((r) => r.containername)).not.toContain(ctr);
      expect(await ok(['run', '--rm', 'squashed', 'cat', '/x'])).toBe('x');
      expectOneLineError(await t.run(['commit', ctr, 'after-rm']), new RegExp(`container ${ctr}: no such working container`));
    });

    it('mount CONTAINER + edit + commit; umount; the mount is gone from mountinfo after umount and after rm', async () => {
      const ctr = await ok(['from', 'busybox']);
      const mnt = await ok(['mount', ctr]);
      expect(mountinfoHas(mnt)).toBe(true);
      expect(await ok(['mount', ctr])).toBe(mnt); // mounted once
      await fsp.writeFile(path.join(mnt, 'edited'), 'from the host\n');
      await fsp.rm(path.join(mnt, 'etc/group'));
      // a run while mounted sees the edit, and the host sees the run's change
      await ok(['run', ctr, '--', 'sh', '-c', 'cat /edited > /from-run']);
      expect(await fsp.readFile(path.join(mnt, 'from-run'), 'utf8')).toBe('from the host\n');
      expect(JSON.parse(await ok(['inspect', ctr])).MountPoint).toBe(mnt);
      expect(await ok(['mount'])).toContain(`${ctr} ${mnt}`);
      const img = await image(await ok(['commit', '-q', ctr, 'mounted-edit']));
      const layer = layerEntries(img.Manifest.layers.at(-1)!.digest);
      expect(names(layer)).toEqual(['edited', 'etc', 'etc/.wh.group', 'from-run']);
      expect(await ok(['run', '--rm', 'mounted-edit', 'sh', '-c', 'cat /edited; ls /etc/group 2>/dev/null || echo no-group'])).toBe('from the host\nno-group');
      await ok(['umount', ctr]);
      expect(mountinfoHas(mnt)).toBe(false);
      expect(existsSync(mnt)).toBe(false);
      // edits stay after umount; mount again, then rm takes the mount with it
      expect(await ok(['run', ctr, '--', 'cat', '/edited'])).toBe('from the host');
      const again = await ok(['mount', ctr]);
      expect(mountinfoHas(again)).toBe(true);
      await ok(['rm', ctr]);
      expect(mountinfoHas(again)).toBe(false);
      expect(mountsUnder(t.root)).toEqual([]);
    });
  });

  describe('rm, rename, inspect', () => {
    it('rm removes the container, its snapshot and record; rm --all; a typo among names removes nothing', async () => {
      const a = await ok(['from', 'busybox']);
      const b = await ok(['from', 'busybox']);
      const id = (await containers()).find((r) => r.containername === a)!.id;
      expectOneLineError(await t.run(['rm', a, 'no-such-ctr', b]), /container no-such-ctr: no such working container/);
      expect((await containers()).map((r) => r.containername)).toEqual(expect.arrayContaining([a, b]));
      expect(await ok(['rm', a])).toBe(id);
      const snaps = JSON.parse(await ok(['snapshots', '--format', 'json'])) as { name: string }[];
      expect(snaps.map((s) => s.name)).not.toContain(`wc-${id}`);
      expect(existsSync(path.join(t.root, 'containers', id))).toBe(false);
      expectOneLineError(await t.run(['rm', a]), /no such working container/);
      await ok(['from', 'scratch']);
      await ok(['rm', '--all']);
      expect(await containers()).toEqual([]);
      expect((await t.run(['rm'])).code).not.toBe(0);
      expect((await t.run(['rm', '--all', b])).code).not.toBe(0);
    });

    it('rename: the new name works everywhere, the old one is gone; a name in use is refused', async () => {
      const a = await ok(['from', 'busybox']);
      const b = await ok(['from', 'busybox']);
      await ok(['rename', a, 'renamed']);
      expect(await ok(['run', 'renamed', '--', 'echo', 'ok'])).toBe('ok');
      expectOneLineError(await t.run(['run', a, '--', 'true']), new RegExp(`${a}`));
      expectOneLineError(await t.run(['rename', 'renamed', b]), new RegExp(`the container name "${b}" is already in use`));
      expectOneLineError(await t.run(['rename', 'nope', 'x']), /container nope: no such working container/);
      // the freed default name is given out again
      expect(await ok(['from', 'busybox'])).toBe(a);
      await ok(['rm', 'renamed', b, a]);
    });

    it('inspect --type container|image; a container name wins over an image name', async () => {
      const ctr = await ok(['from', '--name', 'busybox', 'busybox']); // a container named like the image
      const c = JSON.parse(await ok(['inspect', 'busybox']));
      expect(c).toMatchObject({ FromImage: 'busybox', Container: 'busybox', MountPoint: '' });
      expect(c.ContainerID).toMatch(/^[0-9a-f]{64}$/);
      expect(c.Config.rootfs.diff_ids).toEqual((await image('busybox')).Config.rootfs.diff_ids);
      expect(JSON.parse(await ok(['inspect', '--type', 'container', 'busybox'])).ContainerID).toBe(c.ContainerID);
      expect(JSON.parse(await ok(['inspect', '--type', 'image', 'busybox'])).Id).toMatch(/^sha256:/);
      expectOneLineError(await t.run(['inspect', '--type', 'container', 'nope']), /container nope: no such working container/);
      await ok(['rm', ctr]);
    });

    it('an unknown container: one line, exit 1, for every verb that takes one', async () => {
      for (const args of [['copy', 'ghost', '/etc/passwd', '/x'], ['add', 'ghost', '/etc/passwd', '/x'], ['commit', 'ghost', 'img'], ['rm', 'ghost'], ['rename', 'ghost', 'x']]) {
        expectOneLineError(await t.run(args), /container ghost: no such working container/);
      }
      // run / mount / umount / inspect fall back to an image of that name
      for (const args of [['run', 'ghost', '--', 'true'], ['mount', 'ghost'], ['umount', 'ghost'], ['inspect', 'ghost']]) {
        expectOneLineError(await t.run(args), /ghost/);
      }
    });
  });

  describe('state', () => {
    it('two processes on one container take turns; on two containers they run side by side', async () => {
      const ctr = await ok(['from', 'busybox']);
      const step = (tag: string) => t.run(['run', ctr, '--', 'sh', '-c', `echo ${tag}-start >> /log; sleep 1; echo ${tag}-end >> /log`]);
      const [a, b] = await Promise.all([step('a'), step('b')]);
      expect([a.code, b.code]).toEqual([0, 0]);
      const log = (await ok(['run', ctr, '--', 'cat', '/log'])).split('\n');
      expect([['a-start', 'a-end', 'b-start', 'b-end'], ['b-start', 'b-end', 'a-start', 'a-end']]).toContainEqual(log);

      // side by side: another container's run completes while this one's is still running
      const other = await ok(['from', 'busybox']);
      const secs = String(200_000 + (process.pid % 100_000));
      // `sleep $((…))` on tsbuild's command line, `sleep N` only in the container's
      const long = t.spawn(['run', ctr, '--', 'sh', '-c', `exec sleep $((${secs} + 0))`]);
      try {
        await waitFor(() => processesMatching(`sleep ${secs}`).length > 0, 20_000, 'the long run to start');
        expect(await ok(['run', other, '--', 'echo', 'meanwhile'])).toBe('meanwhile');
        expect(processesMatching(`sleep ${secs}`).length).toBeGreaterThan(0);
      } finally {
        long.kill('SIGTERM');
      }
      await new Promise((r) => long.on('close', r));
      await ok(['rm', ctr, other]);
    });

    it('prune keeps a working container\'s snapshot and base image, even after rmi of the image; after rm it goes', async () => {
      const rootfs = makeBusyboxRootfs(path.join(t.tmp, 'rootfs-base2')) as string;
      await fsp.writeFile(path.join(rootfs, 'base2-marker'), 'base2\n');
      await ok(['import', rootfs, 'base2']);
      const ctr = await ok(['from', 'base2']);
      const id = (await containers()).find((r) => r.containername === ctr)!.id;
      await ok(['run', ctr, '--', 'sh', '-c', 'echo kept > /kept']);
      await ok(['rmi', 'base2']);
      await ok(['prune']);
      const snaps = async () => (JSON.parse(await ok(['snapshots', '--format', 'json'])) as { name: string; parent?: string }[]);
      const mine = (await snaps()).find((s) => s.name === `wc-${id}`);
      expect(mine).toBeDefined();
      expect(await ok(['run', ctr, '--', 'cat', '/kept', '/base2-marker'])).toBe('kept\nbase2');
      const committed = await ok(['commit', '-q', ctr, 'from-base2']);
      expect(committed).toMatch(IMAGE_ID_LINE);
      expect(await ok(['run', '--rm', 'from-base2', 'cat', '/kept', '/base2-marker'])).toBe('kept\nbase2');
      expect(await ok(['fsck'])).toMatch(/0 problem\(s\)/);
      await ok(['rmi', 'from-base2']);
      await ok(['rm', ctr]);
      await ok(['prune']);
      const after = await snaps();
      expect(after.map((s) => s.name)).not.toContain(`wc-${id}`);
      expect(after.map((s) => s.name)).not.toContain(mine!.parent);
    });

    it('kill -9 of a run, a copy and a commit midway leaves the container usable and fsck clean', async () => {
      const ctr = await ok(['from', 'busybox']);
      // run
      const secs = String(300_000 + (process.pid % 100_000));
      const run = t.spawn(['run', ctr, '--', 'sh', '-c', `echo before-kill > /partial; sleep $((${secs} + 0))`]);
      await waitFor(() => processesMatching(`sleep ${secs}`).length > 0, 20_000, 'the run to start');
      run.kill('SIGKILL');
      await new Promise((r) => run.on('close', r));
      await waitFor(() => processesMatching(`sleep ${secs}`).length === 0, 5_000, 'the container processes to die');
      expect(mountsUnder(t.root)).toEqual([]);
      expect(await ok(['run', ctr, '--', 'cat', '/partial'])).toBe('before-kill');

      // copy of a big file, killed once the file is being written into the snapshot
      const big = path.join(t.tmp, 'big.bin');
      expect(spawnSync('sh', ['-c', 'head -c 400000000 /dev/urandom > "$1"', 'sh', big]).status).toBe(0);
      const copy = t.spawn(['copy', ctr, big, '/big.bin']);
      const copyDone = new Promise<number | null>((r) => copy.on('close', (code) => r(code)));
      await waitFor(() => spawnSync('find', [path.join(t.root, 'snapshots'), '-name', 'big.bin'], { encoding: 'utf8' }).stdout.trim() !== '', 30_000, 'the copy to start writing');
      copy.kill('SIGKILL');
      expect(await copyDone).toBeNull(); // killed, not finished
      expect(mountsUnder(t.root)).toEqual([]);
      expect(await ok(['run', ctr, '--', 'cat', '/partial'])).toBe('before-kill');
      await ok(['copy', ctr, big, '/big.bin']);
      expect((await ok(['run', ctr, '--', 'sh', '-c', 'wc -c < /big.bin'])).trim()).toBe('400000000');

      // commit of that big layer, gzip'd so that it takes a while, killed while the blob is written
      const commit = t.spawn(['commit', '-q', '--disable-compression=false', ctr, 'killed-commit']);
      const commitDone = new Promise<number | null>((r) => commit.on('close', (code) => r(code)));
      const ingest = path.join(t.root, 'ingest');
      await waitFor(async () => existsSync(ingest) && (await fsp.readdir(ingest)).length > 0, 60_000, 'the layer blob to start');
      await sleep(100);
      commit.kill('SIGKILL');
      expect(await commitDone).toBeNull();
      expect(mountsUnder(t.root)).toEqual([]);
      expect((await t.run(['inspect', '--type', 'image', 'killed-commit'])).code).not.toBe(0);
      expect(await ok(['fsck'])).toMatch(/0 problem\(s\)/);
      // the container still works: run, commit
      expect(await ok(['run', ctr, '--', 'cat', '/partial'])).toBe('before-kill');
      await ok(['run', ctr, '--', 'rm', '/big.bin']);
      const img = await image(await ok(['commit', '-q', ctr, 'after-kill']));
      expect(names(layerEntries(img.Manifest.layers.at(-1)!.digest))).toEqual(['partial']);
      expect(await ok(['fsck'])).toMatch(/0 problem\(s\)/);
      await ok(['rm', ctr]);
      expect(await ok(['fsck'])).toMatch(/0 problem\(s\)/);
      await fsp.rm(big);
    }, 180_000);
  });
});
