import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore } from './harness.js';

/** Issue 19: a failed RUN's state kept in the build's record, entered with `tsbuild debug`. */
describe('tsbuild debug', () => {
  const t = new TestStore();
  let failed: Awaited<ReturnType<TestStore['run']>>;
  let id: string;
  beforeAll(async () => {
    await t.importBusybox();
    const ctx = await t.context({
      Dockerfile: [
        'FROM busybox',
        'ENV GREETING=hi',
        'WORKDIR /app',
        'RUN echo before > /before',
        'RUN --mount=type=cache,target=/cache echo c > /cache/mark && echo partial > /written && false',
        '',
      ].join('\n'),
    });
    failed = await t.run(['build', ctx]);
    id = (await fsp.readFile(path.join(t.root, 'builds', 'last'), 'utf8')).trim();
  }, 120_000);
  afterAll(() => t.cleanup());

  it('the failure names the command and says how to enter the failed step', () => {
    expect(failed.code).toBe(1);
    const lines = failed.stderr.trim().split('\n');
    expect(lines.at(-1)).toMatch(/^Error: .*Dockerfile:5: RUN .*echo partial > \/written && false exited with status 1; full output: tsbuild logs [0-9a-f]{12} --step 5 \(tsbuild debug last to enter the failed step\)$/);
  });

  it('runs a command in the failed step: what the command wrote up to its failure is there', async () => {
    const r = await t.run(['debug', 'last', '--', 'cat', '/written', '/before']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('partial\nbefore\n');
    expect(r.code).toBe(0);
  });

  it('with the env, workdir and user the step had, and its cache mount', async () => {
    const r = await t.run(['debug', id, '--', 'sh', '-c', 'echo $GREETING; pwd; id -u; cat /cache/mark']);
    expect(r.stdout).toBe('hi\n/app\n0\nc\n');
    expect(r.code).toBe(0);
  });

  it('exits with the command\'s status, and what a session changes is gone for the next', async () => {
    const r = await t.run(['debug', 'last', '--', 'sh', '-c', 'echo changed > /written; exit 7']);
    expect(r.code).toBe(7);
    const again = await t.run(['debug', 'last', '--', 'cat', '/written']);
    expect(again.stdout).toBe('partial\n');
  });

  it('a shell reads its commands from stdin when no command is given', async () => {
    const r = await t.run(['debug', 'last'], { input: 'cat /written\nexit 3\n' });
    expect(r.stdout).toBe('partial\n');
    expect(r.code).toBe(3);
  });

  it('--from-step N enters the state before step N', async () => {
    const five = await t.run(['debug', '--from-step', '5', 'last', '--', 'sh', '-c', 'cat /before; pwd; test -e /written && echo written || echo clean']);
    expect(five.stderr).toBe('');
    expect(five.stdout).toBe('before\n/app\nclean\n');
    const four = await t.run(['debug', '--from-step', '4', 'last', '--', 'sh', '-c', 'test -e /before && echo yes || echo no']);
    expect(four.stdout).toBe('no\n');
    // Step 2 (ENV) starts from the FROM's state, which is not in the build cache.
    const two = await t.run(['debug', '--from-step', '2', 'last', '--', 'sh', '-c', 'echo ${GREETING:-unset}']);
    expect(two.stdout).toBe('unset\n');
    const one = await t.run(['debug', '--from-step', '1', 'last', '--', 'true']);
    expect(one.code).toBe(1);
    expect(one.stderr).toBe(`Error: --from-step 1: step 1 (FROM busybox) is its stage's FROM: nothing comes before it (try --from-step 2)\n`);
    const nine = await t.run(['debug', '--from-step', '9', 'last', '--', 'true']);
    expect(nine.stderr).toBe(`Error: --from-step 9: build ${id} has no step 9 (steps 1 to 5 were recorded)\n`);
  });

  it('--list names the build, the failed step and when', async () => {
    const r = await t.run(['debug', '--list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${id}  step 5: RUN --mount=type=cache.* \\d{4}-\\d\\d-\\d\\dT`));
  });

  it('an unknown build is one line', async () => {
    const r = await t.run(['debug', '0123456789ab', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: build 0123456789ab: no such build in ${path.join(t.root, 'builds')}\n`);
    const bad = await t.run(['debug', 'nope']);
    expect(bad.stderr).toBe('Error: build nope: not a build id (12 hex digits, or last)\n');
  });

  it('build --on-error=shell without a terminal is a usage error, said before building', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN touch /made-by-this-build && false\n' });
    const r = await t.run(['build', '--on-error=shell', ctx]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--on-error=shell needs a terminal on stdin and stdout/);
    // Nothing was built: last is still the failed build above.
    expect((await fsp.readFile(path.join(t.root, 'builds', 'last'), 'utf8')).trim()).toBe(id);
  });
});

describe('tsbuild debug of a USER step, and prune', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox(), 60_000);
  afterAll(() => t.cleanup());

  it('the step\'s user', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nUSER 1234:1234\nRUN false\n' });
    expect((await t.run(['build', ctx])).code).toBe(1);
    const r = await t.run(['debug', 'last', '--', 'sh', '-c', 'id -u; id -g']);
    expect(r.stdout).toBe('1234\n1234\n');
  });

  it('secrets are never kept: given again with --secret (flags before the build)', async () => {
    const tok = path.join(t.tmp, 'tok');
    await fsp.writeFile(tok, 's3cret\n');
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok && false\n' });
    const b = await t.run(['build', '--secret', `id=tok,src=${tok}`, ctx]);
    expect(b.code).toBe(1);
    const id = (await fsp.readFile(path.join(t.root, 'builds', 'last'), 'utf8')).trim();
    expect(await fsp.readFile(path.join(t.root, 'builds', id, 'debug', 'state.json'), 'utf8')).not.toContain('s3cret');
    const without = await t.run(['debug', 'last', '--', 'sh', '-c', 'test -e /run/secrets/tok && echo there || echo absent']);
    expect(without.stdout).toBe('absent\n');
    expect(without.stderr).toBe('warning: secret tok at /run/secrets/tok is not kept: give it again with --secret id=tok,src=PATH\n');
    const given = await t.run(['debug', '--secret', `id=tok,src=${tok}`, 'last', '--', 'cat', '/run/secrets/tok']);
    expect(given.stdout).toBe('s3cret\n');
    const misplaced = await t.run(['debug', 'last', '--secret', `id=tok,src=${tok}`]);
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toMatch(/^Error: --secret: flags go before the build/);
  });

  it('a build that did not fail keeps nothing to enter', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN true\n' });
    expect((await t.run(['build', ctx])).code).toBe(0);
    const r = await t.run(['debug', 'last', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: build [0-9a-f]{12}: no failed step was kept/);
  });

  it('prune removes kept states, their snapshots and records', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN echo x > /x && false\n' });
    expect((await t.run(['build', ctx])).code).toBe(1);
    const id = (await fsp.readFile(path.join(t.root, 'builds', 'last'), 'utf8')).trim();
    const before = await t.run(['snapshots']);
    expect(before.stdout).toContain(`debug-${id}`);
    const listed = (await t.run(['debug', '--list'])).stdout.trim().split('\n');
    expect(listed).toHaveLength(3); // the USER, secret and this build
    const p = await t.run(['prune']);
    expect(p.code).toBe(0);
    expect(p.stdout).toContain(`deleted the failed step kept by build ${id}\n`);
    expect((await t.run(['snapshots'])).stdout).not.toContain('debug-');
    expect((await t.run(['debug', '--list'])).stdout).toBe('');
    const r = await t.run(['debug', id, '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a kept snapshot whose record is gone goes with the next prune', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN echo y > /y && false\n' });
    expect((await t.run(['build', ctx])).code).toBe(1);
    const id = (await fsp.readFile(path.join(t.root, 'builds', 'last'), 'utf8')).trim();
    await fsp.rm(path.join(t.root, 'builds', id), { recursive: true });
    expect((await t.run(['snapshots'])).stdout).toContain(`debug-${id}`);
    const p = await t.run(['prune']);
    expect(p.stdout).toContain(`deleted snapshot debug-${id}\n`);
    expect((await t.run(['snapshots'])).stdout).not.toContain('debug-');
  });
});
