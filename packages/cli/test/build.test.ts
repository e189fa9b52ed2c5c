import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HELLO, IMAGE_ID_LINE, TestStore, mountsUnder } from './harness.js';

describe('tsbuild build of the bundled example', () => {
  const t = new TestStore();
  let out: Awaited<ReturnType<TestStore['run']>>;
  beforeAll(async () => {
    await t.importBusybox();
    out = await t.run(['build', '-t', 'hello', HELLO]);
  });
  afterAll(() => t.cleanup());

  it('succeeds, prints each step and ends with the image ID', () => {
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).toBe('STEP 1/8: FROM busybox');
    expect(lines).toContain('STEP 6/8: RUN chmod 0755 /usr/local/bin/greet     && greet > /srv/www/greeting.txt     && echo "built on $(uname -s) as $(id -u), pid $$" >> /srv/www/greeting.txt');
    expect(lines.at(-1)).toMatch(IMAGE_ID_LINE);
  });

  it('stores an OCI image whose config carries ENV, WORKDIR, EXPOSE, CMD, history and diff_ids', async () => {
    const inspect = JSON.parse((await t.run(['inspect', 'hello'])).stdout);
    expect(inspect.Id).toBe(`sha256:${out.stdout.trim().split('\n').at(-1)}`);
    expect(inspect.Names).toEqual(['docker.io/library/hello:latest']);
    expect(inspect.Manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const c = inspect.Config;
    expect(c.config.Env).toEqual(expect.arrayContaining(['GREETING=Hello from tsbuild', 'PORT=8080']));
    expect(c.config.WorkingDir).toBe('/srv/www');
    expect(c.config.ExposedPorts).toEqual({ '8080/tcp': {} });
    expect(c.config.Cmd).toEqual(['sh', '-c', 'httpd -f -p $PORT -h /srv/www']);
    // base layer + WORKDIR (creates /srv/www) + 2 COPY + RUN
    expect(c.rootfs.diff_ids).toHaveLength(5);
    expect(inspect.Manifest.layers).toHaveLength(5);
    // the imported base and the build's own layers are stored uncompressed, as buildah stores them
    expect(inspect.Manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(Array(5).fill('application/vnd.oci.image.layer.v1.tar'));
    expect(c.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer)).toHaveLength(5);
    expect(c.history.map((h: { created_by: string }) => h.created_by)).toEqual(expect.arrayContaining(['/bin/sh -c #(nop) ENV GREETING=Hello from tsbuild PORT=8080']));
  });

  it('ran RUN as PID 1 of its own PID namespace on the image filesystem, and skopeo + umoci read the result', async () => {
    const archive = path.join(t.tmp, 'hello.tar');
    expect((await t.run(['save', 'hello', '-o', archive, '--format', 'oci-archive'])).code).toBe(0);
    const oci = path.join(t.tmp, 'oci');
    execFileSync('skopeo', ['copy', '-q', `oci-archive:${archive}`, `oci:${oci}:hello`]);
    const bundle = path.join(t.tmp, 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${oci}:hello`, bundle]);
    const greeting = readFileSync(path.join(bundle, 'rootfs/srv/www/greeting.txt'), 'utf8');
    expect(greeting).toBe('Hello from tsbuild (in /srv/www)\nbuilt on Linux as 0, pid 1\n');
    expect(readFileSync(path.join(bundle, 'rootfs/srv/www/index.html'), 'utf8')).toContain('Hello from an image built by tsbuild.');
    const greet = execFileSync('stat', ['-c', '%a %u:%g', path.join(bundle, 'rootfs/usr/local/bin/greet')], { encoding: 'utf8' });
    expect(greet.trim()).toBe('755 0:0');
  });

  it('leaves no mount and no active snapshot behind', async () => {
    expect(mountsUnder(t.tmp)).toEqual([]);
    const snaps = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout) as { kind: string }[];
    expect(snaps.filter((s) => s.kind !== 'committed')).toEqual([]);
    expect(snaps).toHaveLength(5);
  });

  it('lists the image, with JSON for scripts', async () => {
    const table = (await t.run(['images'])).stdout;
    expect(table.split('\n')[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(table).toMatch(/\nhello\s+latest\s+[0-9a-f]{12}\s+/);
    const json = JSON.parse((await t.run(['images', '--format', 'json'])).stdout) as { repository: string; size: number }[];
    expect(json.map((i) => i.repository).sort()).toEqual(['busybox', 'hello']);
    expect(json.every((i) => i.size > 0)).toBe(true);
  });

  it('--progress=tty styles step lines; plain output (not a terminal) has no escape codes', async () => {
    const tty = await t.run(['build', '--progress=tty', '-t', 'hello', HELLO]);
    expect(tty.stdout).toContain('\u001b[1mSTEP 1/8:\u001b[22m FROM busybox');
    expect(tty.stdout).toContain('\u001b[2m--> Using cache\u001b[22m');
    expect(out.stdout).not.toContain('\u001b[');
  });

  it('passes fsck', async () => {
    const r = await t.run(['fsck']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 problem\(s\)/);
  });
});
