import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '@tsbuild/oci';
import { build } from '../src/index.js';
import { type Built, type Harness, openHarness } from './conformance/harness.js';

/**
 * Dockerfile details where tsbuild used to differ from docker (BuildKit) and buildah (issue 15,
 * points 6 to 8): ARG and ENV values that expand another variable, a continuation at the end of
 * the file, RUN's HOME, users missing from /etc/passwd, and WORKDIR kept as written. Each
 * expectation was checked against `buildah bud --runtime /usr/sbin/runc` on the same busybox base.
 */
let h: Harness;
beforeAll(async () => {
  h = await openHarness('lang-fidelity');
});
afterAll(() => h.close());

describe('ARG and ENV defaults that expand another variable keep the whole value', () => {
  let r: Built;
  beforeAll(async () => {
    r = await h.buildIt({
      Dockerfile: [
        'ARG G="global words"',
        'ARG G2=$G',
        'FROM busybox',
        'ARG G2',
        'ARG D="double quoted words"',
        "ARG S='single quoted words'",
        'ARG N=plain',
        'ARG B=escaped\\ spaced\\ words',
        'ARG ED=$D',
        'ARG ES=$S',
        'ARG EN=$N',
        'ARG EB=$B',
        'ARG EQ="$D"',
        'ARG EBR=${D} TWO=${S:-x}',
        'ENV A="x y"',
        "ENV SA='p q'",
        'ENV EA=$A ESA=$SA',
        'ENV LEGACY $A',
        'LABEL ed=$ED es=$ES en=$EN eb=$EB eq=$EQ ebr=$EBR two=$TWO g2=$G2',
        'RUN printf "%s|" "$ED" "$ES" "$EN" "$EB" "$EQ" "$EBR" "$TWO" "$G2" > /args; env > /env',
      ].join('\n'),
    });
  });

  it.each([
    ['ed', 'double quoted words'],
    ['es', 'single quoted words'],
    ['en', 'plain'],
    ['eb', 'escaped spaced words'],
    ['eq', 'double quoted words'],
    ['ebr', 'double quoted words'],
    ['two', 'single quoted words'],
    ['g2', 'global words'],
  ])('ARG %s=… (seen by LABEL) is %j', (label, want) => {
    expect(r.config.config?.Labels?.[label]).toBe(want);
  });

  it('RUN sees the same whole values, and no stray ARG made of the value\'s words', async () => {
    expect(await r.read('args')).toBe('double quoted words|single quoted words|plain|escaped spaced words|double quoted words|double quoted words|single quoted words|global words|');
    expect(await r.read('env')).not.toMatch(/^(quoted|words|spaced)=/m);
  });

  it('ENV b=$a and the legacy ENV b $a keep a value with spaces', () => {
    const env = r.config.config?.Env ?? [];
    expect(env).toContain('EA=x y');
    expect(env).toContain('ESA=p q');
    expect(env).toContain('LEGACY=x y');
  });
});

describe('a last line ending in the escape character, as BuildKit parses it', () => {
  it.each([
    ['without a final newline', 'FROM busybox\nLABEL a=b\\'],
    ['with a final newline', 'FROM busybox\nLABEL a=b\\\n'],
    ['followed by an empty line and a comment', 'FROM busybox\nLABEL a=b\\\n\n# end\n'],
  ])('%s: the continuation is dropped', async (_what, df) => {
    const r = await h.buildIt({ Dockerfile: df });
    expect(r.config.config?.Labels).toEqual({ a: 'b' });
  });

  it('a RUN at the end of the file runs its line without the escape character', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN printf "[%s]" one two > /out \\' });
    expect(await r.read('out')).toBe('[one][two]');
  });
});

describe("RUN's HOME, as runc gives it (buildah and docker agree)", () => {
  let r: Built;
  beforeAll(async () => {
    r = await h.buildIt({
      Dockerfile: [
        'FROM busybox',
        'RUN echo "$HOME" > /tmp/root',
        'USER app',
        'RUN echo "$HOME" > /tmp/app',
        'USER nobody',
        'RUN echo "$HOME" > /tmp/nobody',
        'USER 4242',
        'RUN echo "$HOME" > /tmp/noentry',
        'USER 1000:10',
        'RUN echo "$HOME" > /tmp/uidgid',
        'USER root',
        'ARG HOME=/from-arg',
        'RUN echo "$HOME" > /tmp/arg',
        'ENV HOME=/from-env',
        'USER app',
        'RUN echo "$HOME" > /tmp/env',
      ].join('\n'),
    });
  });

  it.each([
    ['root', '/root', 'root: its passwd entry'],
    ['app', '/home/app', 'a named user: its passwd entry'],
    ['nobody', '/nonexistent', 'the entry as written, even a missing directory'],
    ['noentry', '/', 'a uid without an entry: /'],
    ['uidgid', '/home/app', 'uid:gid: the entry of the uid'],
    ['arg', '/from-arg', 'an ARG named HOME sets it, as a build arg reaches RUN'],
    ['env', '/from-env', 'ENV HOME wins over the passwd entry'],
  ])('%s: HOME=%s (%s)', async (file, want) => {
    expect(await r.read(`tmp/${file}`)).toBe(`${want}\n`);
  });

  it('HOME is not written into the image Env', async () => {
    const b = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN true\n' });
    expect((b.config.config?.Env ?? []).some((e) => e.startsWith('HOME='))).toBe(false);
  });
});

describe('USER names missing from /etc/passwd', () => {
  it('do not fail WORKDIR, COPY or the config', async () => {
    // Built without the harness: umoci unpack itself refuses a config whose User it cannot find.
    const r = await build({ store: h.store, snapshotter: h.snapshotter, context: h.tmp, dockerfileText: 'FROM busybox\nUSER ghost\nWORKDIR /w\nCOPY --from=busybox /etc/group /w/f\nCMD ["x"]\n' });
    const config = (await h.store.image(r.manifest).config()) as ImageConfig;
    expect(config.config?.User).toBe('ghost');
    expect(config.config?.WorkingDir).toBe('/w');
  });

  it('WORKDIR under such a name is made by root (BuildKit and buildah)', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nUSER ghost\nWORKDIR /w\nCOPY f /w/f\nUSER root\n', f: 'hi\n' });
    expect(await r.read('w/f')).toBe('hi\n');
    const st = await r.lstat('w');
    expect([st.uid, st.gid]).toEqual([0, 0]);
  });

  it('WORKDIR under USER name:missing-group takes the user\'s own group; numeric ids are used as they are', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nUSER app:ghostgroup\nWORKDIR /a\nUSER 4242\nWORKDIR /b\nUSER 4242:4343\nWORKDIR /c\nUSER ghost:10\nWORKDIR /d\nUSER root\n' });
    const owner = async (p: string) => {
      const st = await r.lstat(p);
      return [st.uid, st.gid];
    };
    expect(await owner('a')).toEqual([1000, 1000]);
    expect(await owner('b')).toEqual([4242, 4242]);
    expect(await owner('c')).toEqual([4242, 4343]);
    expect(await owner('d')).toEqual([0, 10]);
  });

  it('RUN as numeric ids not in passwd or group runs as them', async () => {
    const r = await h.buildIt({ Dockerfile: 'FROM busybox\nUSER 4242:4343\nRUN id > /tmp/id\nUSER 4242\nRUN id > /tmp/id2\n' });
    expect(await r.read('tmp/id')).toBe('uid=4242 gid=4343 groups=4343\n');
    expect(await r.read('tmp/id2')).toBe('uid=4242 gid=0(root) groups=0(root)\n');
  });

  it.each([
    ['FROM busybox\nUSER ghost\nWORKDIR /w\nRUN true\n', 'Dockerfile:4: unable to find user ghost: no matching entries in passwd file'],
    ['FROM busybox\nUSER ghost:10\nRUN true\n', 'Dockerfile:3: unable to find user ghost: no matching entries in passwd file'],
    ['FROM busybox\nUSER app:ghostgroup\nRUN true\n', 'Dockerfile:3: unable to find group ghostgroup: no matching entries in group file'],
    ['FROM busybox\nUSER 4242:ghostgroup\nRUN true\n', 'Dockerfile:3: unable to find group ghostgroup: no matching entries in group file'],
  ])('%j: a RUN fails in one line, %s', async (df, message) => {
    const err = await h.buildIt({ Dockerfile: df }).then(() => undefined, (e: Error) => e);
    expect(err?.message).toBe(message);
  });
});

describe('WORKDIR in the config as written', () => {
  let r: Built;
  beforeAll(async () => {
    r = await h.buildIt({ Dockerfile: 'FROM busybox\nWORKDIR /tmp/\nRUN pwd > /pwd1\nWORKDIR sub/\nRUN pwd > /pwd2\nWORKDIR /x/../y/\nRUN pwd > /pwd3\n' });
  });

  it('an absolute WORKDIR is kept as written, a relative one joins the previous (cleaned)', async () => {
    const b = await h.buildIt({ Dockerfile: 'FROM busybox\nWORKDIR /tmp/\n' });
    expect(b.config.config?.WorkingDir).toBe('/tmp/');
    const c = await h.buildIt({ Dockerfile: 'FROM busybox\nWORKDIR /tmp/\nWORKDIR sub/./x/..\n' });
    expect(c.config.config?.WorkingDir).toBe('/tmp/sub');
    expect(r.config.config?.WorkingDir).toBe('/x/../y/');
  });

  it('RUN runs in the directory it names, made without its .. components', async () => {
    expect(await r.read('pwd1')).toBe('/tmp\n');
    expect(await r.read('pwd2')).toBe('/tmp/sub\n');
    expect(await r.read('pwd3')).toBe('/y\n');
    expect(await r.exists('x')).toBe(false);
    expect((await r.lstat('tmp/sub')).isDirectory()).toBe(true);
  });
});
