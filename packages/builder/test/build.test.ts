import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '@tsbuild/oci';
import { Store, saveArchive } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs, type BuildEvent } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-builder-'));
let store: Store;
let snapshotter: OverlaySnapshotter;

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

let n = 0;
function ctx(files: Record<string, string>): Promise<string> {
  return writeFiles(path.join(tmp, `ctx-${n++}`), files);
}

function sink(): { stream: Writable; text: () => string } {
  let buf = '';
  return { stream: new Writable({ write: (c, _e, cb) => ((buf += c), cb()) }), text: () => buf };
}

async function buildIt(files: Record<string, string>, extra: Partial<Parameters<typeof build>[0]> = {}) {
  const out = sink();
  const events: BuildEvent[] = [];
  const r = await build({ store, snapshotter, context: await ctx(files), stdout: out.stream, stderr: out.stream, onEvent: (e) => events.push(e), ...extra });
  const config = (await store.image(r.manifest).config()) as ImageConfig;
  return { ...r, config, output: out.text(), events };
}

/** Unpacks an image with skopeo + umoci and returns the rootfs directory. */
async function unpacked(name: string): Promise<string> {
  const { descriptor } = await store.resolve(name);
  const dir = path.join(tmp, `unpack-${n++}`);
  await saveArchive(store, [{ name, descriptor }], `${dir}.tar`, 'oci-archive');
  execFileSync('skopeo', ['copy', '-q', `oci-archive:${dir}.tar`, `oci:${dir}-oci:x`]);
  execFileSync('umoci', ['unpack', '--image', `${dir}-oci:x`, dir]);
  return path.join(dir, 'rootfs');
}

describe('instructions', () => {
  it('ENV (both forms) and ARG: ARGs reach RUN but not the image Env', async () => {
    const r = await buildIt(
      { Dockerfile: 'FROM busybox\nARG WHO=world\nENV A=1 B="two words"\nENV C three four\nRUN echo "$WHO $A $B $C" > /out\n' },
      { tags: ['envtest'], buildArgs: { WHO: 'tsbuild' } },
    );
    expect(r.config.config?.Env).toEqual(expect.arrayContaining(['A=1', 'B=two words', 'C=three four']));
    expect(r.config.config?.Env?.some((e) => e.startsWith('WHO='))).toBe(false);
    const root = await unpacked('envtest');
    expect(await fsp.readFile(path.join(root, 'out'), 'utf8')).toBe('tsbuild 1 two words three four\n');
  });

  it('variable substitution in COPY, WORKDIR and LABEL', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nENV D=/data F=f.txt\nWORKDIR $D/sub\nCOPY ${F} ./\nLABEL where="${D:-none}" what=${UNSET:-dflt}\n', 'f.txt': 'x' }, { tags: ['subst'] });
    expect(r.config.config?.WorkingDir).toBe('/data/sub');
    expect(r.config.config?.Labels).toEqual({ where: '/data', what: 'dflt' });
    expect(await fsp.readFile(path.join(await unpacked('subst'), 'data/sub/f.txt'), 'utf8')).toBe('x');
  });

  it('COPY of a directory copies its contents; several sources need a directory; wildcards match', async () => {
    await buildIt(
      { Dockerfile: 'FROM busybox\nCOPY dir /dst\nCOPY a.txt b.txt /two/\nCOPY *.md /docs/\nCOPY a.txt /renamed.txt\n', 'dir/x': 'x', 'dir/sub/y': 'y', 'a.txt': 'a', 'b.txt': 'b', 'r1.md': '1', 'r2.md': '2' },
      { tags: ['copies'] },
    );
    const root = await unpacked('copies');
    expect((await fsp.readdir(path.join(root, 'dst'))).sort()).toEqual(['sub', 'x']);
    expect(await fsp.readFile(path.join(root, 'dst/sub/y'), 'utf8')).toBe('y');
    expect((await fsp.readdir(path.join(root, 'two'))).sort()).toEqual(['a.txt', 'b.txt']);
    expect((await fsp.readdir(path.join(root, 'docs'))).sort()).toEqual(['r1.md', 'r2.md']);
    expect(await fsp.readFile(path.join(root, 'renamed.txt'), 'utf8')).toBe('a');
    await expect(buildIt({ Dockerfile: 'FROM busybox\nCOPY a.txt b.txt /notdir\n', 'a.txt': 'a', 'b.txt': 'b' })).rejects.toThrow(
      'Dockerfile:2: When using COPY with more than one source file, the destination must be a directory and end with a /',
    );
  });

  it('COPY --chown with names from the image and --chmod', async () => {
    await buildIt({ Dockerfile: 'FROM busybox\nCOPY --chown=app:wheel --chmod=640 f /f\nCOPY --chown=7 f /g\n', f: 'f' }, { tags: ['chown'] });
    const root = await unpacked('chown');
    const st = await fsp.lstat(path.join(root, 'f'));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1000, 10, 0o640]);
    const g = await fsp.lstat(path.join(root, 'g'));
    expect([g.uid, g.gid]).toEqual([7, 7]);
  });

  it('.dockerignore keeps ignored files out of COPY, with ! exceptions', async () => {
    await buildIt({ Dockerfile: 'FROM busybox\nCOPY . /app/\n', '.dockerignore': '*.log\nsecret/\n!keep.log\n', 'a.txt': 'a', 'x.log': 'no', 'keep.log': 'yes', 'secret/k': 'no' }, { tags: ['ignored'] });
    const names = (await fsp.readdir(path.join(await unpacked('ignored'), 'app'))).sort();
    expect(names).toEqual(['.dockerignore', 'Dockerfile', 'a.txt', 'keep.log']);
  });

  it('.containerignore wins over .dockerignore (buildah), and Containerfile.containerignore over both', async () => {
    await buildIt({ Dockerfile: 'FROM busybox\nCOPY . /app/\n', '.containerignore': 'a.txt\n', '.dockerignore': 'b.txt\n', 'a.txt': 'a', 'b.txt': 'b' }, { tags: ['cignored'] });
    expect((await fsp.readdir(path.join(await unpacked('cignored'), 'app'))).sort()).toEqual(['.containerignore', '.dockerignore', 'Dockerfile', 'b.txt']);
    await buildIt({ Dockerfile: 'FROM busybox\nCOPY . /app/\n', 'Dockerfile.containerignore': 'b.txt\n', '.containerignore': 'a.txt\n', 'a.txt': 'a', 'b.txt': 'b' }, { tags: ['dfignored'] });
    expect((await fsp.readdir(path.join(await unpacked('dfignored'), 'app'))).sort()).toEqual(['.containerignore', 'Dockerfile', 'Dockerfile.containerignore', 'a.txt']);
  });

  it('USER applies to RUN and to the config; supplementary groups come from /etc/group', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nUSER app\nRUN id > /tmp/id\nUSER root\nRUN cp /tmp/id /id\nUSER app\n' }, { tags: ['user'] });
    expect(r.config.config?.User).toBe('app');
    expect(await fsp.readFile(path.join(await unpacked('user'), 'id'), 'utf8')).toBe('uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)\n');
  });

  it('supplementary groups match buildah/runc: the primary group is always among them', async () => {
    await buildIt(
      { Dockerfile: 'FROM busybox\nRUN grep Groups /proc/self/status > /tmp/g-root\nUSER 1234\nRUN grep Groups /proc/self/status > /tmp/g-num\nUSER 1000:10\nRUN grep Groups /proc/self/status > /tmp/g-explicit\n' },
      { tags: ['groups'] },
    );
    const root = await unpacked('groups');
    const read = (f: string) => fsp.readFile(path.join(root, 'tmp', f), 'utf8');
    expect(await read('g-root')).toBe('Groups:\t0 \n');
    expect(await read('g-num')).toBe('Groups:\t0 \n');
    expect(await read('g-explicit')).toBe('Groups:\t10 \n');
  });

  it('an unknown USER name fails naming the line', async () => {
    await expect(buildIt({ Dockerfile: 'FROM busybox\nUSER ghost\nRUN true\n' })).rejects.toThrow('Dockerfile:3: unable to find user ghost: no matching entries in passwd file');
  });

  it('ENTRYPOINT clears an inherited CMD; shell-form CMD uses /bin/sh -c; exec-form RUN', async () => {
    await buildIt({ Dockerfile: 'FROM busybox\nCMD ["echo", "base"]\n' }, { tags: ['withcmd'] });
    const r = await buildIt({ Dockerfile: 'FROM withcmd\nENTRYPOINT ["/bin/echo"]\nRUN ["/bin/sh", "-c", "echo exec > /e"]\n' });
    expect(r.config.config?.Entrypoint).toEqual(['/bin/echo']);
    expect(r.config.config?.Cmd ?? null).toBeNull();
    const s = await buildIt({ Dockerfile: 'FROM busybox\nCMD echo hi there\n' });
    expect(s.config.config?.Cmd).toEqual(['/bin/sh', '-c', 'echo hi there']);
  });

  it('WORKDIR creates its directory once; an existing one adds no layer', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nWORKDIR /made/here\nWORKDIR /tmp\n' });
    expect(r.config.config?.WorkingDir).toBe('/tmp');
    expect(r.config.rootfs.diff_ids).toHaveLength(2);
    expect(r.config.history?.at(-1)).toMatchObject({ empty_layer: true, created_by: '/bin/sh -c #(nop) WORKDIR /tmp' });
  });

  it('FROM scratch with COPY gives an image with only that layer', async () => {
    const r = await buildIt({ Dockerfile: 'FROM scratch\nCOPY hello /hello\n', hello: 'hi' }, { tags: ['fromscratch'] });
    expect(r.config.rootfs.diff_ids).toHaveLength(1);
    expect(await fsp.readdir(await unpacked('fromscratch'))).toEqual(['hello']);
  });

  it('multi-stage: FROM an earlier stage, --target, unneeded stages not built', async () => {
    const files = { Dockerfile: 'FROM busybox AS one\nRUN echo one > /one\nFROM busybox AS unused\nRUN exit 1\nFROM one AS two\nRUN cat /one > /two\n' };
    const r = await buildIt(files, { tags: ['staged'] });
    expect(r.events.filter((e) => e.type === 'step').map((e) => (e as { text: string }).text)).toEqual(['FROM busybox AS one', 'RUN echo one > /one', 'FROM one AS two', 'RUN cat /one > /two']);
    expect(await fsp.readFile(path.join(await unpacked('staged'), 'two'), 'utf8')).toBe('one\n');
    const t = await buildIt(files, { target: 'one' });
    expect(t.config.rootfs.diff_ids).toHaveLength(2);
  });

  it('a failing RUN quotes its exit status and last line of output', async () => {
    await expect(buildIt({ Dockerfile: 'FROM busybox\nRUN echo first; echo "no such thing" >&2; exit 7\n' })).rejects.toThrow(
      'Dockerfile:2: RUN echo first; echo "no such thing" >&2; exit 7 exited with status 7 (last output: "no such thing")',
    );
  });

  it('RUN output is streamed to the given stdout', async () => {
    const r = await buildIt({ Dockerfile: 'FROM busybox\nRUN echo to-stdout && echo to-stderr >&2\n' });
    expect(r.output).toContain('to-stdout\n');
    expect(r.output).toContain('to-stderr\n');
  });

  it('takes a context and Dockerfile path relative to the current directory', async () => {
    const dir = await ctx({ 'sub/Dockerfile': 'FROM busybox\nCOPY f /f\n', 'sub/f': 'rel' });
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const r = await build({ store, snapshotter, context: 'sub', dockerfile: 'sub/Dockerfile', tags: ['relative'] });
      expect(r.names).toEqual(['docker.io/library/relative:latest']);
    } finally {
      process.chdir(cwd);
    }
    expect(await fsp.readFile(path.join(await unpacked('relative'), 'f'), 'utf8')).toBe('rel');
  });

  it('--timestamp gives identical image IDs for identical inputs', async () => {
    const files = { Dockerfile: 'FROM busybox\nCOPY f /f\nRUN echo x > /x\n', f: 'same' };
    const a = await buildIt(files, { sourceDateEpoch: 1_700_000_000 });
    const b = await buildIt(files, { sourceDateEpoch: 1_700_000_000 });
    expect(a.config.created).toBe('2023-11-14T22:13:20.000Z');
    expect(b.imageId).toBe(a.imageId);
  });
});
