import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import { setXattr } from '@tsbuild/linux';
import { type CopyOp, copyInto } from '@tsbuild/runtime';
import { OverlaySnapshotter, diff, planCopyLayer } from '@tsbuild/snapshotter';
import { MergedView, copyDirect } from '@tsbuild/snapshotter';
import { mknod, S_IFCHR } from '@tsbuild/linux';

/**
 * The direct path (writing into the fresh upperdir from this process) against the helper path
 * (copyInto through a real overlay mount): same layer tar, entry by entry, and same merged
 * filesystem. Directory mtimes are left out of the comparison: a directory that gets a new child
 * (copied up, or made as a missing parent) takes the time of that write, which differs between
 * any two runs; the mtimes of files, symlinks and of copied source directories are compared.
 */
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-direct-copy-'));
let s: OverlaySnapshotter;
const src = path.join(tmp, 'src');

async function write(p: string, content: string, mode = 0o644): Promise<void> {
  await fsp.mkdir(path.dirname(p), { recursive: true });
  await fsp.writeFile(p, content);
  await fsp.chmod(p, mode);
}

beforeAll(async () => {
  s = await OverlaySnapshotter.open(path.join(tmp, 'snapshots'));
  // Layer 1: a base with odd-moded and owned directories, symlinks, an xattr on a directory.
  await s.prepare('base-key');
  const b = await s.fsDir('base-key');
  await write(path.join(b, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await write(path.join(b, 'srv/a'), 'a\n');
  await fsp.mkdir(path.join(b, 'srv/sub'));
  await fsp.chmod(path.join(b, 'srv'), 0o750);
  await fsp.lchown(path.join(b, 'srv'), 5, 6);
  await fsp.symlink('/srv', path.join(b, 'link'));
  await fsp.symlink('srv', path.join(b, 'rel'));
  await write(path.join(b, 'afile'), 'file\n');
  await write(path.join(b, 'adir/x'), 'x\n');
  await write(path.join(b, 'adir/sub/deep'), 'deep\n');
  await write(path.join(b, 'adir/keep'), 'keep\n');
  await fsp.mkdir(path.join(b, 'opt/data'), { recursive: true });
  await fsp.chmod(path.join(b, 'opt/data'), 0o1777);
  setXattr(path.join(b, 'opt/data'), 'user.note', 'kept on copy-up');
  await s.commit('base', 'base-key');
  // Layer 2: on top, so lookups cross layers.
  await s.prepare('top-key', 'base');
  await write(path.join(await s.fsDir('top-key'), 'srv/b'), 'b\n');
  await fsp.chmod(path.join(await s.fsDir('top-key'), 'srv'), 0o750);
  await fsp.lchown(path.join(await s.fsDir('top-key'), 'srv'), 5, 6);
  await s.commit('top', 'top-key');

  // Sources, as the builder stages them.
  await write(path.join(src, 'one.txt'), 'one\n', 0o640);
  await write(path.join(src, 'tool'), '#!/bin/sh\n', 0o4755);
  await write(path.join(src, 'tree/file'), 'tree file\n');
  await write(path.join(src, 'tree/nested/more'), 'more\n', 0o600);
  await fsp.symlink('../file', path.join(src, 'tree/nested/up'));
  await fsp.chmod(path.join(src, 'tree/nested'), 0o711);
  // Replaces in /adir: x (file) by a directory, sub (directory) by a file, merges into keep's dir.
  await write(path.join(src, 'over/x/inside'), 'inside\n');
  await write(path.join(src, 'over/sub'), 'now a file\n');
  await write(path.join(src, 'over/added'), 'added\n');
  // Owned as another stage's files are (COPY --from keeps them).
  await write(path.join(src, 'owned/sub/f'), 'owned\n');
  await fsp.symlink('f', path.join(src, 'owned/sub/l'));
  await fsp.lchown(path.join(src, 'owned/sub'), 7, 8);
  await fsp.lchown(path.join(src, 'owned/sub/f'), 123, 456);
  await fsp.lchown(path.join(src, 'owned/sub/l'), 11, 12);
  // Two names of one inode (nlink 2).
  await write(path.join(src, 'links/a'), 'one inode\n');
  await fsp.link(path.join(src, 'links/a'), path.join(src, 'links/b'));
  await fsp.utimes(path.join(src, 'over'), 1_000_000, 1_000_000);
  await fsp.utimes(path.join(src, 'tree/nested'), 2_000_000, 2_000_000);
  await fsp.utimes(path.join(src, 'one.txt'), 3_000_000, 3_000_000);
}, 60_000);

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

const f = (p: string) => path.join(src, p);
const copy = (sources: string[], dest: string, extra: Partial<Extract<CopyOp, { op: 'copy' }>> = {}): CopyOp => ({ op: 'copy', sources, dest, uid: 0, gid: 0, ...extra });

const cases: [string, CopyOp[]][] = [
  ['WORKDIR of new nested directories under a lower one', [{ op: 'mkdir', path: '/srv/new/deep', uid: 1000, gid: 1000, mode: 0o755 }]],
  ['WORKDIR of an existing directory through a symlink', [{ op: 'mkdir', path: '/link/sub/new', uid: 0, gid: 0, mode: 0o755 }]],
  ['WORKDIR at the root of new tree', [{ op: 'mkdir', path: '/app', uid: 0, gid: 0, mode: 0o755 }]],
  ['file into a lower directory (copy-up keeps mode and owner)', [copy([f('one.txt')], '/srv/')]],
  ['file through an absolute symlink in the destination', [copy([f('one.txt')], '/link/renamed.txt')]],
  ['file through a relative symlink, destination an existing dir via symlink', [copy([f('one.txt')], '/rel')]],
  ['file over a lower file', [copy([f('one.txt')], '/etc/passwd')]],
  ['file over a lower directory', [copy([f('one.txt')], '/adir/sub', { uid: 7, gid: 8 })]],
  ['directory contents merged into a lower directory, replacing both ways', [copy([f('over')], '/adir')]],
  ['several sources with owner and --chmod into a new directory', [copy([f('one.txt'), f('tool'), f('tree')], '/dst/a/b/', { uid: 1000, gid: 1001, mode: 0o700 })]],
  ['setuid file and a symlink kept', [copy([f('tool'), f('tree/nested/up')], '/usr/local/bin/')]],
  ['into a directory with an xattr (copied up)', [copy([f('one.txt')], '/opt/data/')]],
  ['copy then copy again over own files', [copy([f('tree')], '/t'), copy([f('over')], '/t'), copy([f('one.txt')], '/t/nested')]],
  ['directory source to the root', [copy([f('over')], '/')]],
  ['sources that keep their owners beside one that gets uid:gid', [copy([f('owned'), f('owned/sub/f'), f('one.txt')], '/kept/', { uid: 3, gid: 4, keepOwners: [true, true, false] })]],
];

interface Entry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  linkname: string | null;
  mtime?: number;
  content: string;
  pax: Record<string, string>;
}

async function layerEntries(key: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const x = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    x.on('entry', (h, stream, next) => {
      const hash = createHash('sha256');
      stream.on('data', (d: Buffer) => hash.update(d));
      stream.on('end', () => {
        const isDir = h.type === 'directory';
        out.push({
          name: h.name,
          type: h.type ?? 'file',
          mode: h.mode ?? 0,
          uid: h.uid ?? 0,
          gid: h.gid ?? 0,
          linkname: h.linkname ?? null,
          ...(isDir ? {} : { mtime: h.mtime?.getTime() }),
          content: hash.digest('hex'),
          pax: Object.fromEntries(Object.entries(h.pax ?? {}).filter(([k]) => !/^(mtime|atime|ctime)$/.test(k))),
        });
        next();
      });
      stream.on('error', reject);
    });
    x.on('finish', resolve);
    x.on('error', reject);
  });
  diff(s, key).pipe(x);
  await done;
  return out;
}

async function flatten(name: string): Promise<Record<string, string>> {
  const view = await MergedView.open(s, name);
  const out: Record<string, string> = {};
  const walk = async (p: string): Promise<void> => {
    for (const n of (await view.readdir(p)) ?? []) {
      const child = `${p === '/' ? '' : p}/${n}`;
      const e = (await view.entry(await view.resolve(child)))!;
      const st = e.stat;
      let what = `${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) what += ` -> ${await fsp.readlink(e.abs)}`;
      else if (st.isFile()) what += ` ${createHash('sha256').update(await fsp.readFile(e.abs)).digest('hex')} ${Math.floor(st.mtimeMs / 1000)}`;
      out[child] = what;
      if (st.isDirectory()) await walk(child);
    }
  };
  await walk('/');
  return out;
}

let n = 0;
async function applyBothWays(ops: CopyOp[]): Promise<{ helper: string; direct: string }> {
  const i = n++;
  const helperKey = `helper-${i}`;
  const mounts = await s.prepare(helperKey, 'top');
  await copyInto(mounts, path.join(tmp, `scratch-${i}`), ops);
  const directKey = `direct-${i}`;
  await s.prepare(directKey, 'top');
  await copyDirect(s, 'top', await s.fsDir(directKey), ops);
  return { helper: helperKey, direct: directKey };
}

describe('direct COPY/WORKDIR into the upperdir', () => {
  for (const [title, ops] of cases) {
    it(`gives the helper's layer and filesystem: ${title}`, async () => {
      const { helper, direct } = await applyBothWays(ops);
      const [h, d] = await Promise.all([layerEntries(helper), layerEntries(direct)]);
      expect(h.length).toBeGreaterThan(0);
      expect(d).toEqual(h);
      await s.commit(`${helper}-done`, helper);
      await s.commit(`${direct}-done`, direct);
      const [hf, df] = await Promise.all([flatten(`${helper}-done`), flatten(`${direct}-done`)]);
      expect(Object.keys(hf).length).toBeGreaterThan(5);
      expect(df).toEqual(hf);
    }, 30_000);
  }

  it('writes an opaque directory where a directory replaces a lower file', async () => {
    const { helper, direct } = await applyBothWays([copy([f('over')], '/adir')]);
    for (const key of [helper, direct]) {
      const names = (await layerEntries(key)).map((e) => e.name);
      expect(names).toContain('adir/x/.wh..wh..opq');
      expect(names).not.toContain('adir/.wh..wh..opq');
    }
  });

  it('keeps the owners of a keepOwners source in both paths', async () => {
    const { helper, direct } = await applyBothWays([copy([f('owned'), f('one.txt')], '/ko/', { uid: 3, gid: 4, keepOwners: [true, false] })]);
    for (const key of [helper, direct]) {
      const owners = Object.fromEntries((await layerEntries(key)).map((e) => [e.name.replace(/\/$/, ''), `${e.uid}:${e.gid}`]));
      expect([owners['ko'], owners['ko/sub'], owners['ko/sub/f'], owners['ko/sub/l'], owners['ko/one.txt']]).toEqual(['3:4', '7:8', '123:456', '11:12', '3:4']);
    }
  });

  it('keeps hard links within one source or link group, never across sources (BuildKit: one copier per source)', async () => {
    const cases: [string, CopyOp, boolean][] = [
      ['directory source', copy([f('links')], '/hl-dir/'), true],
      ['two sources', copy([f('links/a'), f('links/b')], '/hl-two/'), false],
      ['matches of one wildcard source', copy([f('links/a'), f('links/b')], '/hl-glob/', { linkGroups: [0, 0] }), true],
      ['two wildcard sources', copy([f('links/a'), f('links/b')], '/hl-globs/', { linkGroups: [0, 1] }), false],
    ];
    for (const [what, op, linked] of cases) {
      const { helper, direct } = await applyBothWays([op]);
      const dest = (op as Extract<CopyOp, { op: 'copy' }>).dest;
      for (const key of [helper, direct]) {
        const dir = path.join(await s.fsDir(key), dest);
        const [a, b] = await Promise.all([fsp.lstat(path.join(dir, 'a')), fsp.lstat(path.join(dir, 'b'))]);
        expect({ what, key: key.replace(/-\d+$/, ''), sameInode: a.ino === b.ino, nlink: a.nlink }).toEqual({ what, key: key.replace(/-\d+$/, ''), sameInode: linked, nlink: linked ? 2 : 1 });
      }
    }
  });

  it('leaves an existing WORKDIR as an empty upperdir', async () => {
    const { helper, direct } = await applyBothWays([{ op: 'mkdir', path: '/srv/sub', uid: 0, gid: 0, mode: 0o755 }]);
    expect(await fsp.readdir(await s.fsDir(helper))).toEqual([]);
    expect(await fsp.readdir(await s.fsDir(direct))).toEqual([]);
  });

  it('fails where the helper fails: a directory over a lower file in the destination path', async () => {
    const ops = [copy([f('one.txt')], '/afile/x/y')];
    await s.prepare('fail-helper', 'top');
    await expect(copyInto(await s.prepare('fail-helper2', 'top'), path.join(tmp, 'scratch-fail'), ops)).rejects.toThrow(/a file of that name exists/);
    await s.prepare('fail-direct', 'top');
    await expect(copyDirect(s, 'top', await s.fsDir('fail-direct'), ops)).rejects.toThrow(/cannot create directory \/afile/);
  });
});

async function bytes(r: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(Buffer.from(c as Buffer));
  return Buffer.concat(parts);
}

describe('a COPY planned as a layer (planCopyLayer), written from its sources', () => {
  // Times of the last hour (the sources and layers made above, the directories a write touches)
  // are clamped to one value; the old times set on purpose above are compared as they are.
  const tarOpts = { sourceDateEpoch: Math.floor(Date.now() / 1000) - 3600 };
  const single = cases.filter(([, ops]) => ops.length === 1 && ops[0]!.op === 'copy');
  const linkCases: [string, CopyOp][] = [
    ['hard links of a directory source', copy([f('links')], '/hl-dir/')],
    ['hard links across two sources (not linked)', copy([f('links/a'), f('links/b')], '/hl-two/')],
    ['hard links of one wildcard source', copy([f('links/a'), f('links/b')], '/hl-glob/', { linkGroups: [0, 0] })],
    ['a later source replacing the first name of a link', copy([f('links'), f('one.txt'), f('links/b')], '/hl-over/', { linkGroups: [0, 1, 0] })],
  ];
  for (const [title, ops] of [...single, ...linkCases.map(([t, op]): [string, CopyOp[]] => [t, [op]])]) {
    it(`holds the bytes of the written COPY's layer: ${title}`, async () => {
      const key = `planned-${n++}`;
      await s.prepare(key, 'top');
      await copyDirect(s, 'top', await s.fsDir(key), ops);
      const plan = await planCopyLayer(s, 'top', ops[0] as Extract<CopyOp, { op: 'copy' }>);
      expect(plan).toBeDefined();
      const [written, planned] = await Promise.all([bytes(diff(s, key, tarOpts)), bytes(plan!.tar(tarOpts))]);
      expect(written.length).toBeGreaterThan(1024);
      expect(planned.equals(written)).toBe(true);
    }, 30_000);
  }

  it('leaves to the writers what it cannot plan: a 0/0 device, a file in the way of a directory', async () => {
    const dev = path.join(tmp, 'whiteout-src');
    await fsp.mkdir(dev);
    mknod(path.join(dev, 'wh'), S_IFCHR | 0o600, 0, 0);
    expect(await planCopyLayer(s, 'top', copy([dev], '/d/') as Extract<CopyOp, { op: 'copy' }>)).toBeUndefined();
    expect(await planCopyLayer(s, 'top', copy([f('one.txt')], '/afile/x/y') as Extract<CopyOp, { op: 'copy' }>)).toBeUndefined();
  });
});
