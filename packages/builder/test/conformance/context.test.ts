import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Built, type Harness, openHarness } from './harness.js';

/** .dockerignore rules (docker's: `**`, `!` exceptions, last match wins) and the <Dockerfile>.dockerignore override. */
let h: Harness;
let r: Built;
let custom: Built;
const files = {
  'keep.txt': 'k', 'secret.env': 's', 'notes.md': 'n', 'README.md': 'r', 'docs/a.md': 'a', 'docs/deep/b.md': 'b',
  'build/out.o': 'o', 'build/keep.o': 'ko', 'node_modules/x/index.js': 'x', 'src/main.c': 'm', 'src/main.o': 'mo',
  'src/tmp/scratch': 's', 'logs/app.log': 'l', 'x/y/z/trace.log': 't', 'a1.tmp': '1', 'ab.tmp': '2', '.git/HEAD': 'h',
};
const ignore = ['# comment', '*.env', '*.md', '!README.md', 'build', '!build/keep.o', 'node_modules', '**/*.o', 'src/tmp/', '**/*.log', 'a?.tmp', '.git', ''].join('\n');

beforeAll(async () => {
  h = await openHarness('context');
  r = await h.buildIt({ Dockerfile: 'FROM busybox\nCOPY . /ctx/\n', '.dockerignore': ignore, ...files });
  custom = await h.buildIt(
    { 'build.Dockerfile': 'FROM busybox\nCOPY . /ctx/\n', 'build.Dockerfile.dockerignore': 'keep.txt\n', '.dockerignore': '*\n', 'keep.txt': 'k', 'other.txt': 'o' },
    { dockerfile: 'build.Dockerfile' },
  );
});
afterAll(() => h.close());

describe('.dockerignore', () => {
  it.each<[string, boolean]>([
    ['keep.txt', true],
    ['secret.env', false],
    ['notes.md', false],
    ['README.md', true],
    ['docs/a.md', true], // *.md matches at the root only
    ['docs/deep/b.md', true],
    ['build/out.o', false],
    ['build/keep.o', false], // **/*.o comes after the exception and wins
    ['node_modules', false],
    ['src/main.c', true],
    ['src/main.o', false],
    ['src/tmp', false],
    ['logs/app.log', false],
    ['x/y/z/trace.log', false],
    ['a1.tmp', false],
    ['ab.tmp', false],
    ['.git', false],
    ['Dockerfile', true],
    ['.dockerignore', true],
  ])('%s present: %s', async (p, present) => {
    expect(await r.exists(`ctx/${p}`)).toBe(present);
  });
});

describe('<Dockerfile>.dockerignore', () => {
  it('the file beside the Dockerfile wins over .dockerignore', async () => {
    expect(await custom.ls('ctx')).toEqual(['.dockerignore', 'build.Dockerfile', 'build.Dockerfile.dockerignore', 'other.txt']);
  });
});
