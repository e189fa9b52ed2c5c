import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HELLO, IMAGE_ID_LINE, TestStore, mountsUnder } from './harness.js';

describe('two tsbuild processes on one store', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('both builds succeed and the store stays consistent', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt && sleep 0.2\n', 'a.txt': 'other' });
    const [a, b] = await Promise.all([t.run(['build', '-t', 'one', HELLO]), t.run(['build', '-t', 'two', ctx])]);
    expect(a.stderr).toBe('');
    expect(b.stderr).toBe('');
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(a.stdout.trim().split('\n').at(-1)).toMatch(IMAGE_ID_LINE);
    const names = (JSON.parse((await t.run(['images', '--format', 'json'])).stdout) as { name: string }[]).map((i) => i.name).sort();
    expect(names).toEqual(['docker.io/library/busybox:latest', 'docker.io/library/one:latest', 'docker.io/library/two:latest']);
    expect((await t.run(['fsck'])).code).toBe(0);
    expect(mountsUnder(t.tmp)).toEqual([]);
  });

  it('the same Dockerfile built twice at once gives two good images sharing the base snapshot', async () => {
    const [a, b] = await Promise.all([t.run(['build', '-t', 'x1', HELLO]), t.run(['build', '-t', 'x2', HELLO])]);
    expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
    expect((await t.run(['fsck'])).code).toBe(0);
    const snaps = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout) as { name: string; kind: string }[];
    expect(snaps.filter((s) => s.kind !== 'committed')).toEqual([]);
    // one busybox base layer on disk however many images use it
    const inspect = JSON.parse((await t.run(['inspect', 'busybox'])).stdout);
    expect(snaps.filter((s) => s.name === inspect.Config.rootfs.diff_ids[0])).toHaveLength(1);
  });
});
