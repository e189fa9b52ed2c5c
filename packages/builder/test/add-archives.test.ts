import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, UnavailableError } from '@tsbuild/oci';
import { extractArchive, isArchive } from '@tsbuild/container';

// Every decompressor add-sources spawns, so a test can wait for it to exit.
const children = vi.hoisted(() => [] as ChildProcess[]);
/** When set, apply starts reading only after every decompressor spawned so far has exited. */
const late = vi.hoisted(() => ({ on: false }));

vi.mock('node:child_process', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:child_process')>();
  const spawn = (...args: Parameters<typeof real.spawn>) => {
    const c = real.spawn(...args);
    children.push(c);
    return c;
  };
  return { ...real, spawn };
});

vi.mock('@tsbuild/snapshotter', async (importOriginal) => {
  const real = await importOriginal<typeof import('@tsbuild/snapshotter')>();
  const apply: typeof real.apply = async (layer, dir, opts) => {
    if (late.on) {
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : once(c, 'exit'))));
      // node resumes unread stdio streams on a tick after 'exit' (child_process flushStdio).
      await new Promise((r) => setImmediate(r));
    }
    return real.apply(layer, dir, opts);
  };
  return { ...real, apply };
});

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-add-archives-'));
const archives: Record<string, string> = {};

beforeAll(async () => {
  const src = path.join(tmp, 'src');
  await fsp.mkdir(path.join(src, 'dir'), { recursive: true });
  await fsp.writeFile(path.join(src, 'dir', 'inside.txt'), 'inside\n');
  for (const [name, flag] of [['bz.tar.bz2', 'j'], ['xz.tar.xz', 'J']] as const) {
    archives[name] = path.join(tmp, name);
    execFileSync('tar', [`-c${flag}f`, archives[name], '-C', src, 'dir']);
  }
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

let n = 0;
const outDir = () => path.join(tmp, `out-${n++}`);

describe('extractArchive through bzip2 and xz', () => {
  for (const name of ['bz.tar.bz2', 'xz.tar.xz']) {
    it(`${name}: every file arrives even when the decompressor exits before apply starts reading`, async () => {
      late.on = true;
      try {
        const dir = outDir();
        expect(await isArchive(archives[name]!)).toBe(true);
        await extractArchive(archives[name]!, dir);
        expect(await fsp.readFile(path.join(dir, 'dir', 'inside.txt'), 'utf8')).toBe('inside\n');
      } finally {
        late.on = false;
      }
    });
  }

  it('a decompressor that fails after writing the whole tar fails the extraction', async () => {
    // xz decodes the complete stream, then exits 1 on the trailing bytes: the tar alone looks fine.
    const bad = path.join(tmp, 'trailing.tar.xz');
    await fsp.writeFile(bad, Buffer.concat([await fsp.readFile(archives['xz.tar.xz']!), Buffer.from('garbage')]));
    const err = await extractArchive(bad, outDir()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/^ADD trailing\.tar\.xz: xz could not decompress it \(exited with status 1\): .*Unexpected end of input/);
  });

  it('a missing decompressor is Unavailable, naming the tool', async () => {
    const saved = process.env.PATH;
    process.env.PATH = path.join(tmp, 'no-such-bin');
    try {
      await expect(extractArchive(archives['bz.tar.bz2']!, outDir())).rejects.toThrow(UnavailableError);
      await expect(extractArchive(archives['bz.tar.bz2']!, outDir())).rejects.toThrow(/^ADD bz\.tar\.bz2: bzip2 is not installed/);
    } finally {
      process.env.PATH = saved;
    }
  });
});
