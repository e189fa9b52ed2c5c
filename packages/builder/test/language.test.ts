import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, promises as fsp } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '@tsbuild/oci';
import { Store, saveArchive } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs, type BuildOptions } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-lang-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
let server: Server;
let base: string;
const served = 'downloaded content\n';

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
  // A file server on loopback for ADD <url>.
  server = createServer((req, res) => {
    if (req.url === '/files/remote.txt') {
      res.writeHead(200, { 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT' });
      res.end(served);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.close();
  await fsp.rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function buildIt(files: Record<string, string | Buffer>, extra: Partial<BuildOptions> = {}) {
  const dir = await writeFiles(path.join(tmp, `ctx-${n++}`), files);
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const r = await build({ store, snapshotter, context: dir, stdout: quiet, stderr: quiet, ...extra });
  const config = (await store.image(r.manifest).config()) as ImageConfig;
  const root = path.join(tmp, `unpack-${n++}`);
  await saveArchive(store, [{ descriptor: r.manifest }], `${root}.tar`, 'oci-archive');
  execFileSync('skopeo', ['copy', '-q', `oci-archive:${root}.tar`, `oci:${root}-oci:x`]);
  execFileSync('umoci', ['unpack', '--image', `${root}-oci:x`, root]);
  const read = (p: string) => fsp.readFile(path.join(root, 'rootfs', p), 'utf8');
  return { ...r, config, root: path.join(root, 'rootfs'), read };
}

describe('heredocs', () => {
  it('RUN <<EOF runs the body as a script; a command with a heredoc gets it as stdin; quoted delimiters do not expand', async () => {
    const r = await buildIt({
      Dockerfile: 'FROM busybox\nENV WHO=world\nRUN <<EOF\necho "hello $WHO" > /a\necho second >> /a\nEOF\nRUN <<-EOT cat > /b\n\ttabbed $WHO\n\tEOT\nRUN cat > /c <<"X"\nliteral $WHO\nX\n',
    });
    expect(await r.read('a')).toBe('hello world\nsecond\n');
    expect(await r.read('b')).toBe('tabbed world\n');
    expect(await r.read('c')).toBe('literal $WHO\n');
  });

  it('a #! heredoc is executed as a file', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nRUN <<EOF\n#!/bin/sh -e\necho "$0" | grep -q tmp && echo ran-as-file > /shebang\nEOF\n' });
    expect(await r.read('shebang')).toBe('ran-as-file\n');
    expect(await fsp.readdir(path.join(r.root, 'tmp'))).toEqual([]);
  });

  it('COPY <<EOF writes files, expanding variables unless the delimiter is quoted', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nARG V=1\nCOPY <<A <<"B" /docs/\nversion $V\nA\nversion $V\nB\nCOPY <<EOF /single.txt\none\nEOF\n' });
    expect(await r.read('docs/A')).toBe('version 1\n');
    expect(await r.read('docs/B')).toBe('version $V\n');
    expect(await r.read('single.txt')).toBe('one\n');
    expect((await fsp.stat(path.join(r.root, 'single.txt'))).mode & 0o777).toBe(0o644);
  });
});

describe('COPY --from', () => {
  it('copies from an earlier stage by name and by index, through symlinked paths, after whiteouts', async () => {
    const r = await buildIt({
      Dockerfile:
        'FROM busybox AS build\nRUN mkdir -p /out/sub /real && echo bin > /out/app && echo s > /out/sub/s && echo gone > /out/gone && ln -s /real /link && echo r > /real/f\nRUN rm /out/gone\n' +
        'FROM busybox\nCOPY --from=build /out /app/\nCOPY --from=0 /out/app /single\nCOPY --from=build /link/f /via-link\nCOPY --from=build /out/s* /globbed/\n',
    });
    expect((await fsp.readdir(path.join(r.root, 'app'))).sort()).toEqual(['app', 'sub']);
    expect(await r.read('single')).toBe('bin\n');
    expect(await r.read('via-link')).toBe('r\n');
    expect(await fsp.readdir(path.join(r.root, 'globbed'))).toEqual(['s']);
  });

  it('copies from an image in the store; an unknown source says so', async () => {
    const r = await buildIt({ Dockerfile: 'FROM scratch\nCOPY --from=busybox /bin/busybox /bb\n' });
    expect((await fsp.stat(path.join(r.root, 'bb'))).size).toBeGreaterThan(100_000);
    await expect(buildIt({ Dockerfile: 'FROM busybox AS a\nFROM scratch\nCOPY --from=a /nope /x\n' })).rejects.toThrow('Dockerfile:3: COPY --from=a /nope: no such file or directory in a');
    await expect(buildIt({ Dockerfile: 'FROM scratch\nCOPY --from=nosuch /x /x\n' })).rejects.toThrow('Dockerfile:2:6: COPY --from=nosuch: no stage of that name, and no such image in the local store');
  });
});

describe('ADD', () => {
  it('unpacks local tar, tar.gz, tar.bz2 and tar.xz archives; copies other files as they are', async () => {
    const src = path.join(tmp, 'archive-src');
    await fsp.mkdir(path.join(src, 'dir'), { recursive: true });
    await fsp.writeFile(path.join(src, 'dir', 'inside.txt'), 'inside\n');
    const files: Record<string, Buffer | string> = { Dockerfile: 'FROM busybox\nADD plain.tar /p/\nADD gz.tar.gz /g\nADD bz.tar.bz2 /b/\nADD xz.tar.xz /x/\nADD notes.txt /notes.txt\n', 'notes.txt': 'just a file\n' };
    for (const [name, flag] of [['plain.tar', ''], ['gz.tar.gz', 'z'], ['bz.tar.bz2', 'j'], ['xz.tar.xz', 'J']] as const) {
      execFileSync('tar', [`-c${flag}f`, path.join(tmp, name), '-C', src, 'dir']);
      files[name] = await fsp.readFile(path.join(tmp, name));
    }
    const r = await buildIt(files);
    for (const d of ['p', 'g', 'b', 'x']) expect(await r.read(`${d}/dir/inside.txt`)).toBe('inside\n');
    expect(await r.read('notes.txt')).toBe('just a file\n');
  });

  it('downloads a URL with mode 0600 and the server\'s mtime, checking --checksum', async () => {
    const sum = `sha256:${createHash('sha256').update(served).digest('hex')}`;
    const r = await buildIt({ Dockerfile: `FROM busybox\nADD --checksum=${sum} ${base}/files/remote.txt /dl/\n` });
    expect(await r.read('dl/remote.txt')).toBe(served);
    const st = await fsp.stat(path.join(r.root, 'dl/remote.txt'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.mtime.toISOString()).toBe('2015-10-21T07:28:00.000Z');
    await expect(buildIt({ Dockerfile: `FROM busybox\nADD --checksum=sha256:${'0'.repeat(64)} ${base}/files/remote.txt /dl/\n` })).rejects.toThrow(/Dockerfile:2: ADD .*checksum mismatch/);
    await expect(buildIt({ Dockerfile: `FROM busybox\nADD ${base}/missing /dl/\n` })).rejects.toThrow(/Dockerfile:2: ADD .*answered 404/);
  });
});

describe('HEALTHCHECK and ONBUILD', () => {
  it('HEALTHCHECK sets the config with durations in nanoseconds; NONE disables', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nHEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --retries=4 CMD wget -q -O- http://localhost/ || exit 1\n' });
    expect(r.config.config?.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'wget -q -O- http://localhost/ || exit 1'], Interval: 300e9, Timeout: 3e9, StartPeriod: 90e9, Retries: 4 });
    const e = await buildIt({ Dockerfile: 'FROM busybox\nHEALTHCHECK CMD ["true"]\n' });
    expect(e.config.config?.Healthcheck).toEqual({ Test: ['CMD', 'true'] });
    const none = await buildIt({ Dockerfile: 'FROM busybox\nHEALTHCHECK NONE\n' });
    expect(none.config.config?.Healthcheck).toEqual({ Test: ['NONE'] });
    await expect(buildIt({ Dockerfile: 'FROM busybox\nHEALTHCHECK --interval=soon CMD true\n' })).rejects.toThrow('Dockerfile:2: HEALTHCHECK --interval=soon: want a duration');
  });

  it('ONBUILD triggers are stored, run in the child build, and not inherited further', async () => {
    const parent = await buildIt({ Dockerfile: 'FROM busybox\nONBUILD RUN echo triggered > /trig\nONBUILD ENV FROM_TRIGGER=1\n' }, { tags: ['onbuild-parent'] });
    expect(parent.config.config?.OnBuild).toEqual(['RUN echo triggered > /trig', 'ENV FROM_TRIGGER=1']);
    const child = await buildIt({ Dockerfile: 'FROM onbuild-parent\nRUN cat /trig > /copy\n' });
    expect(await child.read('copy')).toBe('triggered\n');
    expect(child.config.config?.Env).toContain('FROM_TRIGGER=1');
    expect(child.config.config?.OnBuild ?? null).toBeNull();
    await expect(buildIt({ Dockerfile: 'FROM busybox\nONBUILD FROM x\n' })).rejects.toThrow('Dockerfile:2: ONBUILD FROM is not allowed');
  });
});

describe('the build context', () => {
  it('a symlink in a COPY source path resolves inside the context, never on the host', async () => {
    const dir = path.join(tmp, 'ctx-symlinks');
    await fsp.mkdir(path.join(dir, 'real'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'real', 'passwd'), 'context copy\n');
    await fsp.symlink('/etc', path.join(dir, 'etc-link'));
    await fsp.symlink('/real', path.join(dir, 'abs-link'));
    await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY abs-link/passwd /from-abs\nCOPY abs-link /followed/\n');
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const r = await build({ store, snapshotter, context: dir, stdout: quiet, stderr: quiet });
    const root = path.join(tmp, 'unpack-symlinks');
    await saveArchive(store, [{ descriptor: r.manifest }], `${root}.tar`, 'oci-archive');
    execFileSync('skopeo', ['copy', '-q', `oci-archive:${root}.tar`, `oci:${root}-oci:x`]);
    execFileSync('umoci', ['unpack', '--image', `${root}-oci:x`, root]);
    // abs-link → /real means the context's real/, not the host's /real
    expect(await fsp.readFile(path.join(root, 'rootfs/from-abs'), 'utf8')).toBe('context copy\n');
    // a symlink named as the source is followed, inside the context (docker's and buildah's COPY)
    expect(await fsp.readFile(path.join(root, 'rootfs/followed/passwd'), 'utf8')).toBe('context copy\n');
    // …so a link to /etc is the context's /etc, which does not exist: never the host's
    for (const src of ['etc-link/passwd', 'etc-link']) {
      await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM busybox\nCOPY ${src} /stolen\n`);
      await expect(build({ store, snapshotter, context: dir, stdout: quiet, stderr: quiet })).rejects.toThrow(`Dockerfile:2: COPY source ${src}: no such file or directory in the build context`);
    }
  });

  it('independent stages build in parallel and both feed the final stage', async () => {
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const dir = path.join(tmp, 'ctx-parallel');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox AS a\nRUN sleep 1 && echo a > /a\nFROM busybox AS b\nRUN sleep 1 && echo b > /b\nFROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n');
    // When each `sleep 1` RUN started and ended, by step number.
    const runs = new Map<number, { start: number; end?: number }>();
    await build({
      store,
      snapshotter,
      context: dir,
      stdout: quiet,
      stderr: quiet,
      noCache: true,
      onEvent: (e) => {
        if (e.type === 'step' && e.text.startsWith('RUN sleep')) runs.set(e.step, { start: Date.now() });
        if (e.type === 'step-done' && runs.has(e.step)) runs.get(e.step)!.end = Date.now();
      },
    });
    const [x, y] = [...runs.values()];
    // The two RUN steps overlapped in time: the second started before the first ended.
    expect(runs.size).toBe(2);
    expect(Math.max(x!.start, y!.start)).toBeLessThan(Math.min(x!.end!, y!.end!));
  });
});
