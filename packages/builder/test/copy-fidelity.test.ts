import { promises as fsp } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import { type Harness, openHarness } from './conformance/harness.js';

/**
 * COPY/ADD details where docker and BuildKit have a rule tsbuild must follow (issue 15): owners
 * of COPY --from and of ADD's archives, symlinks named as sources, wildcards that match nothing
 * and escaped wildcards. Each build runs twice: with layers (a fresh snapshot per step: the direct
 * write into the upperdir) and without (one pending snapshot: the helper on the mounted rootfs).
 */
let h: Harness;

beforeAll(async () => {
  h = await openHarness('copy-fidelity');
}, 120_000);

afterAll(async () => {
  await h.close();
});

async function tarOf(entries: { name: string; uid: number; gid: number; content?: string; type?: 'directory' | 'symlink'; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    pack.entry({ name: e.name, uid: e.uid, gid: e.gid, mode: e.type === 'directory' ? 0o755 : 0o644, type: e.type ?? 'file', ...(e.linkname ? { linkname: e.linkname } : {}) }, e.content ?? '');
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const owner = async (r: { lstat(p: string): Promise<import('node:fs').Stats> }, p: string) => {
  const st = await r.lstat(p);
  return `${st.uid}:${st.gid}`;
};

for (const [path, layers] of [
  ['direct write into the upperdir', true],
  ['helper on the mounted rootfs', false],
] as const) {
  describe(`COPY/ADD fidelity (${path})`, () => {
    it('COPY --from keeps the owners files have in the stage; --chown wins; context files are 0:0', async () => {
      const r = await h.buildIt(
        {
          Dockerfile: [
            'FROM busybox AS a',
            'RUN mkdir -p /d/sub && echo x > /d/f && echo y > /d/sub/g && ln -s f /d/l && chown 123:456 /d/f && chown 7:8 /d/sub && chown 9:10 /d/sub/g && chown -h 11:12 /d/l',
            'FROM busybox',
            'COPY --from=a /d /out/',
            'COPY --from=a /d/f /single',
            'COPY --from=a /d/f /d/sub /several/',
            'COPY --from=a --chown=1:2 /d /chowned/',
            'COPY ctx.txt /ctx.txt',
            '',
          ].join('\n'),
          'ctx.txt': 'ctx\n',
        },
        { layers },
      );
      expect(await Promise.all(['out/f', 'out/sub', 'out/sub/g', 'out/l', 'single', 'several/f', 'several/g'].map((p) => owner(r, p)))).toEqual(['123:456', '7:8', '9:10', '11:12', '123:456', '123:456', '9:10']);
      expect(await Promise.all(['chowned/f', 'chowned/sub', 'chowned/sub/g', 'chowned/l', 'ctx.txt'].map((p) => owner(r, p)))).toEqual(['1:2', '1:2', '1:2', '1:2', '0:0']);
      // The destination directory COPY makes is root's, as in BuildKit.
      expect(await owner(r, 'out')).toBe('0:0');
    }, 120_000);

    it('ADD of a local tar keeps the owners the archive records (and --chown wins)', async () => {
      const archive = await tarOf([
        { name: 'top/', uid: 5, gid: 6, type: 'directory' },
        { name: 'top/file', uid: 1000, gid: 1001, content: 'in the tar\n' },
        { name: 'top/link', uid: 3, gid: 4, type: 'symlink', linkname: 'file' },
      ]);
      await fsp.mkdir(h.tmp, { recursive: true });
      const r = await h.buildIt({ Dockerfile: 'FROM busybox\nADD a.tar /x/\nADD --chown=2:3 a.tar /y/\nADD plain.txt /plain\n', 'a.tar': archive, 'plain.txt': 'p\n' }, { layers });
      expect(await Promise.all(['x/top', 'x/top/file', 'x/top/link'].map((p) => owner(r, p)))).toEqual(['5:6', '1000:1001', '3:4']);
      expect(await Promise.all(['y/top', 'y/top/file', 'y/top/link', 'plain'].map((p) => owner(r, p)))).toEqual(['2:3', '2:3', '2:3', '0:0']);
    }, 120_000);

    it('a source that is a symlink is followed inside the context and copied under the link name', async () => {
      const r = await h.buildIt(
        {
          Dockerfile: ['FROM busybox', 'COPY link /links/', 'COPY link /renamed', 'COPY linkdir /ld/', 'COPY lin? /glob/', 'COPY abs /abs', 'COPY tree /tree/', ''].join('\n'),
          'file.txt': 'file\n',
          link: { symlink: 'file.txt' },
          'dir/inner': 'inner\n',
          linkdir: { symlink: 'dir' },
          // An absolute target starts again at the context root.
          abs: { symlink: '/dir/inner' },
          'tree/real': 'real\n',
          'tree/kept': { symlink: 'real' },
        },
        { layers },
      );
      expect((await r.lstat('links/link')).isFile()).toBe(true);
      expect(await r.read('links/link')).toBe('file\n');
      expect(await r.read('renamed')).toBe('file\n');
      expect(await r.read('ld/inner')).toBe('inner\n');
      expect((await r.lstat('glob/link')).isFile()).toBe(true);
      expect(await r.read('abs')).toBe('inner\n');
      // Inside a copied directory a symlink stays a symlink.
      expect((await r.lstat('tree/kept')).isSymbolicLink()).toBe(true);
    }, 120_000);

    it('a source symlink that leads nowhere inside the context is a missing file', async () => {
      for (const link of ['nowhere', '../../../../../../etc/passwd', '/etc/hostname']) {
        await expect(h.buildIt({ Dockerfile: 'FROM busybox\nCOPY l /x\n', l: { symlink: link } }, { layers })).rejects.toThrow(/COPY source l: no such file or directory in the build context/);
      }
    }, 120_000);

    it('COPY --from follows a symlink source inside the stage and keeps its name', async () => {
      const r = await h.buildIt(
        {
          Dockerfile: ['FROM busybox AS a', 'RUN mkdir /d && echo t > /d/t && chown 4:5 /d/t && ln -s /d/t /abs && ln -s d /reldir', 'FROM busybox', 'COPY --from=a /abs /x/', 'COPY --from=a /reldir /y/', 'COPY --from=a /ab? /z/', ''].join('\n'),
        },
        { layers },
      );
      expect((await r.lstat('x/abs')).isFile()).toBe(true);
      expect(await r.read('x/abs')).toBe('t\n');
      expect(await owner(r, 'x/abs')).toBe('4:5');
      expect(await r.read('y/t')).toBe('t\n');
      expect((await r.lstat('z/abs')).isFile()).toBe(true);
    }, 120_000);

    it('a wildcard that matches nothing is skipped when something else is copied; otherwise an error', async () => {
      const r = await h.buildIt({ Dockerfile: 'FROM busybox\nCOPY nomatch* f.txt /m/\nCOPY --from=busybox /nomatch* /bin/busybox /n/\n', 'f.txt': 'f\n' }, { layers });
      expect(await r.ls('m')).toEqual(['f.txt']);
      expect(await r.ls('n')).toEqual(['busybox']);
      await expect(h.buildIt({ Dockerfile: 'FROM busybox\nCOPY nomatch* /m/\n', 'f.txt': 'f\n' }, { layers })).rejects.toThrow(/nomatch\*: no source files were specified/);
      await expect(h.buildIt({ Dockerfile: 'FROM busybox\nCOPY --from=busybox /nomatch* /m/\n' }, { layers })).rejects.toThrow(/nomatch\*: no source files were specified/);
      await expect(h.buildIt({ Dockerfile: 'FROM busybox\nCOPY missing f.txt /m/\n', 'f.txt': 'f\n' }, { layers })).rejects.toThrow(/COPY source missing: no such file/);
    }, 120_000);

    it('escaped wildcards match literally; COPY "" copies the whole context', async () => {
      const r = await h.buildIt(
        {
          Dockerfile: ['FROM busybox', 'COPY n\\?pe /e/', 'COPY ["n\\\\?pe", "/j/"]', 'COPY \\[x\\] /b/', 'COPY s\\*r* /s/', 'COPY ["", "/all/"]', 'COPY "" /sh/', 'ARG P=n', 'COPY ${P}\\?pe "$P\\?pe" /v/', ''].join('\n'),
          'n?pe': 'literal\n',
          nope: 'wildcard\n',
          '[x]': 'brackets\n',
          x: 'x\n',
          's*r1': 'star\n',
          sir: 'no\n',
        },
        { layers },
      );
      expect(await r.ls('e')).toEqual(['n?pe']);
      expect(await r.ls('j')).toEqual(['n?pe']);
      expect(await r.ls('v')).toEqual(['n?pe']); // after a variable too, and in double quotes
      expect(await r.ls('b')).toEqual(['[x]']);
      expect(await r.ls('s')).toEqual(['s*r1']);
      expect((await r.ls('all')).sort()).toEqual(['Dockerfile', '[x]', 'n?pe', 'nope', 's*r1', 'sir', 'x']);
      expect((await r.ls('sh')).sort()).toEqual(['Dockerfile', '[x]', 'n?pe', 'nope', 's*r1', 'sir', 'x']);
    }, 120_000);
  });
}
