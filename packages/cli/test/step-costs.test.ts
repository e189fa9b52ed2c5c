import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore } from './harness.js';

/** Issue 19: what each RUN cost, per-step limits, full step logs and `tsbuild logs`. */
describe('build: step costs, per-step limits, step logs', () => {
  const t = new TestStore();
  beforeAll(async () => {
    await t.importBusybox();
  });
  afterAll(() => t.cleanup());

  it('a RUN step ends with its wall time, CPU time and peak memory; a ~100 MB step shows a peak of 100 to 150 MB', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN head -c 100m /dev/zero | tail | wc -c\n' });
    const r = await t.run(['build', '--no-cache', ctx]);
    expect(r.stderr).toBe('');
    const line = r.stdout.split('\n').find((l) => l.startsWith('--> ') && l.includes('peak'));
    expect(line).toMatch(/^--> \d+\.\ds, cpu \d+\.\ds, peak \d+ MB$/);
    const mb = Number(/peak (\d+) MB/.exec(line!)![1]);
    expect(mb).toBeGreaterThanOrEqual(105); // 100 MiB
    expect(mb).toBeLessThanOrEqual(158); // 150 MiB
  });

  it('# tsbuild:limits memory=64m OOM-kills its step only, naming the step and the directive line', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN head -c 100m /dev/zero | tail | wc -c\n# tsbuild:limits memory=64m\nRUN head -c 100m /dev/zero | tail | wc -c\n' });
    const r = await t.run(['build', '--no-cache', ctx]);
    expect(r.code).toBe(1);
    // The step before it held the same 100 MB under the build's (absent) default.
    expect(r.stdout).toContain('104857600\n');
    // Before it, the step's own stderr (the shell's "Killed").
    expect(r.stderr.endsWith('\nError: Dockerfile:4: RUN was killed: out of memory (limit 64 MiB, from # tsbuild:limits on line 3) (tsbuild debug last to enter the failed step)\n')).toBe(true);
  });

  it('keeps every RUN step\'s complete output, stdout and stderr, for tsbuild logs; a failure points at it', async () => {
    const ctx = await t.context({
      Dockerfile: 'FROM busybox\nRUN echo out-1; echo err-1 >&2\nENV X=1\nRUN seq 1 200000\nRUN echo before-failure; exit 3\n',
    });
    const r = await t.run(['build', '--no-cache', '-q', ctx]);
    expect(r.code).toBe(1);
    const id = /full output: tsbuild logs ([0-9a-f]{12}) --step 5/.exec(r.stderr)?.[1];
    expect(r.stderr).toMatch(/^err-1\nError: Dockerfile:5: RUN echo before-failure; exit 3 exited with status 3 \(last output: "before-failure"\); full output: tsbuild logs [0-9a-f]{12} --step 5 \(tsbuild debug last to enter the failed step\)\n$/);
    expect(id).toBeDefined();
    const logs = path.join(t.root, 'builds', id!, 'logs');
    // Not clipped: all 200000 lines (1.3 MB).
    const seq = readFileSync(path.join(logs, 'step-4.log'), 'utf8');
    expect(seq.split('\n')).toHaveLength(200001);
    expect(seq.endsWith('199999\n200000\n')).toBe(true);
    const all = await t.run(['logs']);
    expect(all.code).toBe(0);
    expect(all.stdout.startsWith('STEP 2: RUN echo out-1; echo err-1 >&2\nout-1\nerr-1\nSTEP 4: RUN seq 1 200000\n1\n2\n')).toBe(true);
    expect(all.stdout.endsWith('200000\nSTEP 5: RUN echo before-failure; exit 3\nbefore-failure\n')).toBe(true);
    const one = await t.run(['logs', id!.slice(0, 6), '--step', '2']);
    expect(one).toMatchObject({ code: 0, stdout: 'out-1\nerr-1\n' });
    const none = await t.run(['logs', 'last', '--step', '3']);
    expect(none).toMatchObject({ code: 1, stderr: `Error: build ${id}: step 3 has no log (logged steps: 2, 4, 5)\n` });
    expect((await t.run(['logs', 'nothex'])).stderr).toBe('Error: build nothex: not a build id (12 hex digits, or last)\n');
  });
});
