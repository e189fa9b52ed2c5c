import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import { writeOutputFile } from './output-file.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'output-file-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const bytes = (s: string) => (w: NodeJS.WritableStream) => pipeline(Readable.from([Buffer.from(s)]), w);

describe('writeOutputFile', () => {
  it('writes the file whole', async () => {
    const out = join(dir, 'a.tar');
    await writeOutputFile(out, bytes('hello'));
    expect(await readFile(out, 'utf8')).toBe('hello');
    expect(await readdir(dir)).toEqual(['a.tar']);
  });

  it('a missing directory is one error naming the path, not the temp file', async () => {
    const out = join(dir, 'no/such/dir/a.tar');
    const e = await writeOutputFile(out, bytes('x')).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect((e as Error).message).toBe(`cannot write ${out}: no such directory`);
  });

  it('a directory in the way fails naming it, and leaves no temp file', async () => {
    const out = join(dir, 'd');
    await mkdir(out);
    const e = await writeOutputFile(out, bytes('x')).catch((err: unknown) => err);
    expect((e as Error).message).toBe(`cannot write ${out}: it is a directory`);
    expect(await readdir(dir)).toEqual(['d']);
  });

  it('a failed write leaves the old file as it was and no temp file', async () => {
    const out = join(dir, 'a.tar');
    await writeFile(out, 'old');
    const failing = (w: NodeJS.WritableStream) =>
      pipeline(
        Readable.from((async function* () {
          yield Buffer.from('partial');
          throw new Error('layer unreadable');
        })()),
        w,
      );
    await expect(writeOutputFile(out, failing)).rejects.toThrow('layer unreadable');
    expect(await readFile(out, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['a.tar']);
  });

  it('a failure before anything is written leaves nothing either', async () => {
    const out = join(dir, 'a.tar');
    await expect(writeOutputFile(out, () => Promise.reject(new Error('image not known')))).rejects.toThrow('image not known');
    expect(await readdir(dir)).toEqual([]);
  });
});
