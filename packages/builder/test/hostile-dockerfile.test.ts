import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '@tsbuild/oci';
import { Store } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';
import { build, importRootfs, type BuildOptions } from '../src/index.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { writeFiles } from './write-files.js';

/**
 * Issue 14: a Dockerfile must never reach the host. Whatever a Dockerfile says, the build ends
 * with one error naming Dockerfile:LINE, of the kind of what went wrong, within bounded memory.
 */
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-hostile-'));
let store: Store;
let snapshotter: OverlaySnapshotter;
const quiet = new Writable({ write: (_c, _e, cb) => cb() });

beforeAll(async () => {
  store = await Store.open(path.join(tmp, 'store'));
  snapshotter = await OverlaySnapshotter.open(path.join(tmp, 'store', 'snapshots'));
  await importRootfs(store, makeBusyboxRootfs(path.join(tmp, 'rootfs')), 'busybox');
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function buildIt(files: Record<string, string | Buffer>, extra: Partial<BuildOptions> = {}) {
  const dir = await writeFiles(path.join(tmp, `ctx-${n++}`), files);
  return build({ store, snapshotter, context: dir, stdout: quiet, stderr: quiet, ...extra });
}

async function failure(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('the build succeeded');
}

describe('variable expansion is bounded', () => {
  it('ENV A=$A$A 28 times fails at the line that passes 1 MiB, without growing to gigabytes', async () => {
    const rss = process.memoryUsage().rss;
    const df = `FROM busybox\nENV A=x\n${'ENV A=$A$A\n'.repeat(28)}`;
    const e = await failure(buildIt({ Dockerfile: df }));
    // A doubles per line: line 22 makes it 2^20 bytes, which with the name passes the 1 MiB an instruction may expand to.
    expect(e.message).toBe('Dockerfile:22: variable expansion is too large: more than 1 MiB in one instruction');
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(process.memoryUsage().rss - rss).toBeLessThan(200 << 20);
  });

  it('many words of one instruction count together (EXPOSE $A $A …)', async () => {
    const df = `FROM busybox\nENV A=x\n${'ENV A=$A$A\n'.repeat(17)}EXPOSE ${'$A '.repeat(9)}\n`;
    expect((await failure(buildIt({ Dockerfile: df }))).message).toBe('Dockerfile:20: variable expansion is too large: more than 1 MiB in one instruction');
  });

  it('values adding up across instructions stop at the config limit (LABEL l1=$A, l2=$A, …)', async () => {
    const df = `FROM busybox\nENV A=x\n${'ENV A=$A$A\n'.repeat(19)}${Array.from({ length: 20 }, (_, i) => `LABEL l${i}=$A\n`).join('')}`;
    expect((await failure(buildIt({ Dockerfile: df }))).message).toMatch(/^Dockerfile:34: LABEL: the image config would grow to \d+ bytes, more than the 8 MiB allowed$/);
  });

  it('deeply nested substitutions are one error, not a stack overflow', async () => {
    const df = `FROM busybox\nENV B=${'${A:-'.repeat(40_000)}x${'}'.repeat(40_000)}\n`;
    expect((await failure(buildIt({ Dockerfile: df }))).message).toBe('Dockerfile:2: variable substitutions nested more than 32 deep');
  });
});

describe('FROM errors name their line', () => {
  it.each([
    ['FROM busybox\nFROM ${NOPE}\n', 'Dockerfile:2: FROM ${NOPE}: the image name is empty'],
    // `AS` is not the image when the name expands to nothing.
    ['FROM busybox\nFROM ${NOPE} AS x\n', 'Dockerfile:2: FROM ${NOPE}: the image name is empty'],
    ['FROM busybox":latest\n', 'Dockerfile:1: FROM busybox":latest: unexpected end of statement while looking for matching double-quote'],
    ['FROM busybox:${TAG!x}\n', 'Dockerfile:1: FROM busybox:${TAG!x}: unsupported modifier (!) in substitution of TAG'],
    ['FROM busybox:${TAG%x}\n', 'Dockerfile:1: FROM busybox:${TAG%x}: unsupported modifier (%) in substitution of TAG'],
    ['FROM busybox:${TAG:?}\n', 'Dockerfile:1:14: TAG: is not allowed to be unset (in ${TAG:?})'],
    ['ARG V=${X!y}\nFROM busybox\n', 'Dockerfile:1: unsupported modifier (!) in substitution of X'],
    ['FROM busybox AS a\nFROM scratch\nCOPY --from=${S!} /x /y\n', 'Dockerfile:3: unsupported modifier (!) in substitution of S'],
  ])('%j', async (df, message) => {
    const e = await failure(buildIt({ Dockerfile: df }));
    expect(e.message).toBe(message);
    expect(e.code).toBe('INVALID_ARGUMENT');
  });
});

describe('errors inside a step name their line once and keep their kind', () => {
  it('a missing COPY source stays NOT_FOUND', async () => {
    const e = await failure(buildIt({ Dockerfile: 'FROM busybox\nRUN true\nCOPY nope.txt /x\n' }));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toBe('Dockerfile:3: COPY source nope.txt: no such file or directory in the build context');
  });

  it('an out-of-range source date epoch is refused up front', async () => {
    const e = await failure(buildIt({ Dockerfile: 'FROM busybox\nRUN true\n' }, { sourceDateEpoch: 99999999999999999 }));
    expect(e.message).toBe('source date epoch 100000000000000000: want whole seconds between -8640000000000 and 8640000000000');
    expect(e.code).toBe('INVALID_ARGUMENT');
  });
});

describe('a Dockerfile is read with a cap', () => {
  it('a 10 GB (sparse) Dockerfile is refused after 1 MiB, naming the line', async () => {
    const dir = await writeFiles(path.join(tmp, `ctx-${n++}`), { 'a.txt': 'a' });
    const file = path.join(dir, 'Dockerfile');
    await fsp.writeFile(file, 'FROM busybox\nRUN true\n');
    await fsp.truncate(file, 10 * 2 ** 30);
    const rss = process.memoryUsage().rss;
    const e = await failure(build({ store, snapshotter, context: dir, stdout: quiet, stderr: quiet }));
    expect(e.message).toBe('Dockerfile:3: the Dockerfile is larger than 1 MiB, the most tsbuild reads');
    expect(process.memoryUsage().rss - rss).toBeLessThan(100 << 20);
  });
});

describe('ENOSPC while a layer is written', () => {
  let mnt: string;
  let small: Store;
  let smallSnapshotter: OverlaySnapshotter;
  beforeAll(async () => {
    mnt = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-enospc-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    small = await Store.open(path.join(mnt, 'store'));
    smallSnapshotter = await OverlaySnapshotter.open(path.join(mnt, 'store', 'snapshots'));
  });
  afterAll(async () => {
    execFileSync('umount', [mnt]);
    await fsp.rm(mnt, { recursive: true, force: true });
  });

  it('fails with Dockerfile:LINE and the step, keeps the ENOSPC code, and leaves no active snapshot', async () => {
    // A COPY's layer is written straight from the context (no snapshot file first): 2.5 MB of
    // layer tar does not fit in the 2 MiB store.
    const dir = await writeFiles(path.join(tmp, `ctx-${n++}`), { Dockerfile: 'FROM scratch\nCOPY big /big\n', big: Buffer.alloc(2_500_000, 7) });
    const e = await failure(build({ store: small, snapshotter: smallSnapshotter, context: dir, stdout: quiet, stderr: quiet }));
    expect(e.message).toMatch(/^Dockerfile:2: COPY big \/big: writing the layer of step 2: ENOSPC: no space left on device/);
    expect(e.code).toBe('ENOSPC');
    const active: string[] = [];
    await smallSnapshotter.walk((info) => {
      if (info.kind !== 'committed') active.push(info.name);
    });
    expect(active).toEqual([]);
  });
});
