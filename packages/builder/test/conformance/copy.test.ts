import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Built, type Harness, openHarness } from './harness.js';

/** COPY and ADD semantics: one context, one Dockerfile of many COPYs, a table of what each put where. */
let h: Harness;
let r: Built;
const MTIME = 1_500_000_000;

beforeAll(async () => {
  h = await openHarness('copy');
  r = await h.buildIt({
    Dockerfile: [
      'FROM busybox',
      'COPY file.txt /f1',
      'COPY file.txt /dir1/',
      'COPY file.txt dir2/',
      'COPY dir /dcontents',
      'COPY dir /dslash/',
      'COPY a.md b.md /several/',
      'COPY *.md /wild/',
      'COPY d?r/sub /qm/',
      'COPY [ab].md /cls/',
      'COPY link /links/',
      'COPY old.txt /mtime/',
      'COPY exec.sh /modes/',
      'COPY --chmod=640 file.txt /chmod/f',
      'COPY --chown=1:2 file.txt /chown/f',
      'COPY --chown=app:wheel dir /chown-dir/',
      'WORKDIR /wd',
      'COPY file.txt .',
      'COPY file.txt rel/',
      'COPY ["with space.txt", "/json/"]',
      'COPY --link file.txt /linked',
      'COPY --exclude=*.md --exclude=skip* . /excl/',
      'COPY --exclude=**/*.log dir /excl-deep/',
      'COPY --parents dir/sub/deep.txt a.md /parents/',
      'COPY --parents dir/./sub/deep.txt /pivot/',
      'COPY dir/sub/ /trailing-src/',
      'COPY . /all/',
      'ADD file.txt /added',
      'ADD dir /added-dir/',
      'COPY <<EOF /heredoc.txt',
      'from heredoc',
      'EOF',
      'COPY empty /emptydir/',
      '',
    ].join('\n'),
    'file.txt': 'file\n',
    'with space.txt': 'space\n',
    'a.md': 'a\n',
    'b.md': 'b\n',
    'skipme': 'skipped\n',
    'dir/x.txt': 'x\n',
    'dir/app.log': 'log\n',
    'dir/sub/deep.txt': 'deep\n',
    'dir/sub/deep.log': 'deeplog\n',
    'link': { symlink: 'file.txt' },
    'old.txt': { mode: 0o644, content: 'old\n', mtime: MTIME },
    'exec.sh': { mode: 0o755, content: '#!/bin/sh\n' },
    'empty/.keep': '',
  });
});
afterAll(() => h.close());

type Check = [string, () => Promise<unknown>, unknown];
const read = (p: string) => () => r.read(p);
const ls = (p: string) => () => r.ls(p);
const exists = (p: string) => () => r.exists(p);

describe('COPY / ADD', () => {
  it.each<Check>([
    ['file to a new name', read('f1'), 'file\n'],
    ['file to dir/ keeps its name', read('dir1/file.txt'), 'file\n'],
    ['relative destination is from WORKDIR (/ before any)', read('dir2/file.txt'), 'file\n'],
    ['directory copies its contents, not itself', ls('dcontents'), ['app.log', 'sub', 'x.txt']],
    ['directory to dir/ copies contents too', ls('dslash'), ['app.log', 'sub', 'x.txt']],
    ['nested directories are copied', read('dcontents/sub/deep.txt'), 'deep\n'],
    ['several sources into a directory', ls('several'), ['a.md', 'b.md']],
    ['* wildcard', ls('wild'), ['a.md', 'b.md']],
    ['? wildcard in a directory component', ls('qm'), ['deep.log', 'deep.txt']],
    ['[ ] class wildcard', ls('cls'), ['a.md', 'b.md']],
    ['a symlink named as the source is followed (docker)', async () => (await r.lstat('links/link')).isFile(), true],
    ['its target is copied under the link name', async () => r.read('links/link'), 'file\n'],
    ['mtime kept', async () => Math.round((await r.lstat('mtime/old.txt')).mtimeMs / 1000), MTIME],
    ['executable mode kept', async () => (await r.lstat('modes/exec.sh')).mode & 0o777, 0o755],
    ['regular mode kept', async () => (await r.lstat('f1')).mode & 0o777, 0o644],
    ['files are owned by root', async () => (await r.lstat('f1')).uid, 0],
    ['--chmod', async () => (await r.lstat('chmod/f')).mode & 0o777, 0o640],
    ['--chown uid:gid', async () => [(await r.lstat('chown/f')).uid, (await r.lstat('chown/f')).gid], [1, 2]],
    ['--chown names resolved in the image apply to a directory\'s files', async () => [(await r.lstat('chown-dir/x.txt')).uid, (await r.lstat('chown-dir/x.txt')).gid], [1000, 10]],
    ['. destination is WORKDIR', read('wd/file.txt'), 'file\n'],
    ['relative dir/ destination under WORKDIR', read('wd/rel/file.txt'), 'file\n'],
    ['JSON form with spaces', read('json/with space.txt'), 'space\n'],
    ['--link gives the same file', read('linked'), 'file\n'],
    ['--exclude drops matching files', async () => (await r.ls('excl')).filter((n) => n.endsWith('.md') || n.startsWith('skip')), []],
    ['--exclude keeps the others', async () => (await r.ls('excl')).includes('file.txt'), true],
    ['--exclude with ** reaches nested files', async () => [await r.exists('excl-deep/app.log'), await r.exists('excl-deep/sub/deep.log'), await r.exists('excl-deep/sub/deep.txt')], [false, false, true]],
    ['--parents keeps the source path', read('parents/dir/sub/deep.txt'), 'deep\n'],
    ['--parents with a top-level file', read('parents/a.md'), 'a\n'],
    ['--parents only what was named', ls('parents/dir'), ['sub']],
    ['--parents with /./ keeps the part after it', read('pivot/sub/deep.txt'), 'deep\n'],
    ['a source with a trailing slash copies contents', ls('trailing-src'), ['deep.log', 'deep.txt']],
    ['COPY . copies the context (Dockerfile too)', async () => (await r.ls('all')).includes('Dockerfile'), true],
    ['COPY . keeps symlinks in the context', async () => (await r.lstat('all/link')).isSymbolicLink(), true],
    ['ADD of a plain file is a copy', read('added'), 'file\n'],
    ['ADD of a directory copies contents', ls('added-dir'), ['app.log', 'sub', 'x.txt']],
    ['COPY <<EOF heredoc', read('heredoc.txt'), 'from heredoc\n'],
    ['a directory with one empty file', ls('emptydir'), ['.keep']],
    ['a missing destination directory is created', exists('several'), true],
  ])('%s', async (_name, get, want) => {
    expect(await get()).toEqual(want);
  });
});
