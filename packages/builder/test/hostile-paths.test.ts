import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Harness, openHarness } from './conformance/harness.js';

/**
 * Hostile Dockerfiles and contexts against canaries on the host (issue 14): every path that comes
 * from a Dockerfile or a context is resolved inside its root, so symlinks of every shape
 * (absolute, relative with `..`, chained, as the last component) pointing at a host file or
 * directory must leave the canaries unread, unwritten and unremoved.
 */

const SECRET = 'CANARY-SECRET-7f3a';
let h: Harness;
let canary: string;
let before: string;
let server: Server;
let port: number;

/** Every entry below the canary directory with its type, mode, size, mtime and content. */
function snapshot(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = path.join(d, n);
      const st = lstatSync(p);
      out.push(`${path.relative(canary, p)} ${st.mode} ${st.size} ${st.mtimeMs} ${st.isFile() ? readFileSync(p, 'utf8') : ''}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.join('\n');
}

/** A build that may fail: its error, its output, and whether the canary's secret reached its image. */
async function attempt(files: Parameters<Harness['buildIt']>[0], extra: Parameters<Harness['buildIt']>[1] = {}): Promise<{ error?: string; output: string; leaked: boolean }> {
  try {
    const r = await h.buildIt(files, extra);
    let leaked = false;
    try {
      execFileSync('grep', ['-rqs', SECRET, r.root]);
      leaked = true;
    } catch {
      // grep exits 1 when nothing matches
    }
    return { output: r.output, leaked: leaked || r.output.includes(SECRET) || JSON.stringify(r.config).includes(SECRET) };
  } catch (e) {
    const message = (e as Error).message;
    return { error: message, output: '', leaked: message.includes(SECRET) };
  }
}

function expectCanaryUntouched(r: { error?: string; leaked: boolean }): void {
  expect(r.leaked, `the canary's content reached the build (${r.error ?? 'no error'})`).toBe(false);
  expect(snapshot(canary)).toBe(before);
  expect(readdirSync(path.dirname(canary)).filter((n) => n === 'pwned' || n === 'x')).toEqual([]);
}

/** Links to `target` (a host path) from the context root: absolute, relative through `..`, and chained (hop1 -> hop2 -> target, the test writes the hops). */
function linkShapes(target: string): Record<string, string> {
  return {
    absolute: target,
    relative: `${'../'.repeat(12)}${target.slice(1)}`,
    chained: 'hop1',
  };
}

/** The canaries, made anew before each test so that each test fails or passes on its own. */
function makeCanary(): void {
  rmSync(canary, { recursive: true, force: true });
  for (const n of ['pwned', 'x']) rmSync(path.join(path.dirname(canary), n), { recursive: true, force: true });
  mkdirSync(path.join(canary, 'dir/y/v'), { recursive: true });
  writeFileSync(path.join(canary, 'secret'), `${SECRET}\n`);
  writeFileSync(path.join(canary, 'dir/file'), `${SECRET} in dir\n`);
  for (const p of ['secret', 'dir/file', 'dir/y/v', 'dir/y', 'dir', '.']) utimesSync(path.join(canary, p), 1_000_000, 1_000_000);
  before = snapshot(canary);
}

beforeEach(makeCanary);

beforeAll(async () => {
  h = await openHarness('hostile-paths');
  canary = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-canary-'));
  server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(`served ${req.url}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.close();
  rmSync(canary, { recursive: true, force: true });
  await h.close();
});

describe('RUN --mount sources never leave their root', () => {
  it('type=bind from a stage: a symlink source (to /, to a host directory) is resolved in that stage', async () => {
    for (const source of ['/link', '/root-link', '/rel-link', '/chain']) {
      const r = await attempt({
        Dockerfile:
          `FROM busybox AS e\nRUN ln -s ${canary} /link && ln -s / /root-link && ln -s ../../../../..${canary} /rel-link && ln -s /link /chain\n` +
          `FROM busybox\nRUN --mount=type=bind,from=e,source=${source},target=/h,rw sh -c 'cat /h/secret /h${canary}/secret /h/dir/file; touch /h/pwned /h${canary}/pwned; rm -rf /h/secret /h/dir /h${canary}/secret; true'\n`,
      });
      expectCanaryUntouched(r);
    }
  });

  it('type=bind from the context: a symlink source, as any component, is resolved in the context', async () => {
    for (const [shape, link] of Object.entries(linkShapes(canary))) {
      for (const rw of ['', ',rw']) {
        const r = await attempt({
          Dockerfile: `FROM busybox\nRUN --mount=type=bind,source=out,target=/h${rw} sh -c 'cat /h/secret /h/dir/file; touch /h/pwned; rm -rf /h/secret /h/dir; true'\nRUN --mount=type=bind,source=out/secret,target=/s${rw} sh -c 'cat /s; echo > /s; true'\n`,
          out: { symlink: link },
          hop1: { symlink: 'hop2' },
          hop2: { symlink: canary },
        });
        expect.soft(r.leaked, shape).toBe(false);
        expectCanaryUntouched(r);
      }
    }
    // A symlink that stays inside the context is followed there.
    const ok = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=in,target=/h cat /h/f > /seen\n', in: { symlink: '../../sub' }, 'sub/f': 'inside\n' });
    expect(await ok.read('seen')).toBe('inside\n');
  });

  it('mount targets: a RUN that swaps a directory on the way for a host symlink gets nothing removed on the host', async () => {
    const swap = `sh -c 'mv /x /x.o && ln -s ${canary}/dir /x'`;
    for (const mount of ['type=tmpfs,target=/x/y/v', 'type=cache,id=c1,target=/x/y/v', 'type=bind,source=f,target=/x/y/v', 'type=secret,id=s,target=/x/y/v']) {
      const r = await attempt({ Dockerfile: `FROM busybox\nRUN --mount=${mount} ${swap}\n`, f: 'x' }, { secrets: { s: { env: 'HOME' } } });
      expect(r.error).toBeUndefined();
      expectCanaryUntouched(r);
    }
  });

  it('mount targets through an image symlink to a host path land inside the container', async () => {
    const r = await attempt({
      Dockerfile: `FROM busybox\nRUN ln -s ${canary} /t && ln -s ../../../../${canary.slice(1)}/dir /u\nRUN --mount=type=tmpfs,target=/t/secret --mount=type=bind,source=f,target=/u/file --mount=type=cache,id=../../../${canary.slice(1)},target=/t/dir sh -c 'echo x > /t/dir/new; true'\n`,
      f: 'x',
    });
    expect(r.error).toBeUndefined();
    expectCanaryUntouched(r);
  });
});

describe('mount targets procfs refuses', () => {
  it('fail at once with one line naming the target instead of looping', async () => {
    const started = Date.now();
    for (const mount of ['type=tmpfs,target=/proc/nope/x', 'type=bind,source=f,target=/proc/nope', 'type=cache,target=/proc/self/fd/19/x']) {
      const r = await attempt({ Dockerfile: `FROM busybox\nRUN --mount=${mount} true\n`, f: 'x' });
      expect(r.error).toMatch(/^Dockerfile:2: cannot (mount|create mountpoint) [^\n]*$/);
    }
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

describe('COPY and ADD sources and destinations never leave their root', () => {
  it('a wildcard source does not glob through a context symlink to a host directory', async () => {
    for (const [shape, link] of Object.entries(linkShapes(canary))) {
      for (const src of ['out/*', 'out/dir/*', 'out/secre?', 'o*/secret', '**/secret']) {
        const r = await attempt({ Dockerfile: `FROM busybox\nCOPY ${src} /w/\n`, out: { symlink: link }, hop1: { symlink: 'hop2' }, hop2: { symlink: canary }, keep: 'k' });
        expect.soft(r.leaked, `${shape} ${src}`).toBe(false);
        expectCanaryUntouched(r);
      }
    }
    // The same wildcards work inside the context, a symlinked directory of the context included.
    const ok = await h.buildIt({ Dockerfile: 'FROM busybox\nCOPY ke* /w/\nCOPY in/* /i/\nCOPY **/deep /d/\n', keep: 'k', in: { symlink: '/sub' }, 'sub/f': 'f', 'sub/x/deep': 'd' });
    expect([await ok.read('w/keep'), await ok.read('i/f'), await ok.read('d/deep')]).toEqual(['k', 'f', 'd']);
  });

  it('plain sources through a context symlink, and a symlink as the last component, stay in the context', async () => {
    for (const src of ['out/secret', 'out/dir', 'out', 'hop1/secret', 'sec']) {
      const r = await attempt({ Dockerfile: `FROM busybox\nCOPY ${src} /w/\nADD ${src} /a/\n`, out: { symlink: canary }, hop1: { symlink: 'hop2' }, hop2: { symlink: `../../../..${canary}` }, sec: { symlink: `${canary}/secret` } });
      expectCanaryUntouched(r);
    }
  });

  it('destinations through an image symlink to a host directory are written inside the image', async () => {
    const r = await attempt({
      Dockerfile: `FROM busybox\nRUN ln -s ${canary} /d && ln -s ../../..${canary}/dir /e\nCOPY f /d/secret\nCOPY f /e/\nADD a.tar /d/\nWORKDIR /d/dir/wd\nRUN echo x > file\n`,
      f: 'overwritten',
      'a.tar': tarWith('secret', 'from the archive\n'),
    });
    expect(r.error).toBeUndefined();
    expectCanaryUntouched(r);
  });

  it('ADD of a tar whose own symlinks point at a host directory writes through them inside the destination only', async () => {
    // docker unpacks an ADD tar chrooted to the destination, so such links lead inside it
    // (go-archive chrootarchive.Untar); tsbuild resolves them with the same in-root rule.
    const entries: (tar.Headers & { body?: string })[] = [];
    for (const [shape, link] of Object.entries(linkShapes(canary))) {
      entries.push({ name: shape, type: 'symlink', linkname: link });
      for (const p of ['secret', 'dir/file', 'pwned', 'dir/y/v/x']) entries.push({ name: `${shape}/${p}`, body: 'from the archive\n' });
      entries.push({ name: `${shape}-hl`, type: 'link', linkname: `${shape}/secret` });
    }
    entries.push({ name: 'hop1', type: 'symlink', linkname: 'hop2' }, { name: 'hop2', type: 'symlink', linkname: `../../../..${canary}` });
    // the hops come last: `chained` dangles until then, so its entries went into a directory named hop1
    entries.push({ name: 'chained2', type: 'symlink', linkname: 'hop1' }, { name: 'chained2/secret', body: 'through hops\n' }, { name: 'up', type: 'symlink', linkname: '../../../..' }, { name: `up${canary}/pwned`, body: 'x' });
    const r = await attempt({ Dockerfile: `FROM busybox\nADD a.tar /a/\nRUN cat /a${canary}/secret /a/relative-hl /a${canary}/pwned\n`, 'a.tar': await tarStreamOf(entries) });
    expect(r.error).toBeUndefined();
    // every link led to /a/<canary path> (a link is followed inside /a, not inside the image)
    expect(r.output).toMatch(/through hops\nfrom the archive\nx/);
    expectCanaryUntouched(r);
  });

  it('COPY --from: a source that is a symlink to a host path is resolved in the stage', async () => {
    const r = await attempt({
      Dockerfile: `FROM busybox AS e\nRUN ln -s ${canary} /link && ln -s /link/secret /s\nFROM busybox\nCOPY --from=e /link/secret /a\nCOPY --from=e /s /b\nCOPY --from=e /link/* /c/\n`,
    });
    expectCanaryUntouched(r);
  });

  it('ADD of a URL whose name decodes to ../ paths writes only into the image (and deletes nothing on a bad checksum)', async () => {
    const evil = encodeURIComponent(`../../../../../../../../..${canary}/secret`);
    const ok = await attempt({ Dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/${evil} /x\nRUN cat /x > /seen\n` });
    expect(ok.error).toBeUndefined();
    expectCanaryUntouched(ok);
    const bad = await attempt({ Dockerfile: `FROM busybox\nADD --checksum=sha256:${'0'.repeat(64)} http://127.0.0.1:${port}/${evil} /x\n` });
    expect(bad.error).toMatch(/checksum mismatch/);
    expectCanaryUntouched(bad);
  });
});

describe('the Dockerfile and ignore files are read inside the context', () => {
  it('a Dockerfile that is a symlink to a host file is not read', async () => {
    for (const link of [`${canary}/secret`, `../../../../..${canary}/secret`]) {
      const r = await attempt({ Dockerfile: { symlink: link } });
      expect(r.error).toMatch(/Dockerfile .*no such file/);
      expectCanaryUntouched(r);
    }
  });

  it('a .dockerignore that is a symlink to a host file is not read', async () => {
    const r = await attempt({ Dockerfile: 'FROM busybox\nCOPY . /c/\n', '.dockerignore': { symlink: `${canary}/secret` }, f: 'x' });
    expect(r.error).toBeUndefined();
    expectCanaryUntouched(r);
  });
});

/** An archive written entry by entry (tar(1) cannot write a file below a symlink it wrote). */
async function tarStreamOf(entries: (tar.Headers & { body?: string })[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => pack.on('end', resolve));
  for (const { body, ...hd } of entries) await new Promise<void>((resolve, reject) => pack.entry(hd, body ?? '', (e) => (e ? reject(e) : resolve())));
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A one-file ustar archive, made by tar(1). */
function tarWith(name: string, content: string): Buffer {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-tar-'));
  try {
    writeFileSync(path.join(dir, name), content);
    return execFileSync('tar', ['-C', dir, '--format=ustar', '-cf', '-', name]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
