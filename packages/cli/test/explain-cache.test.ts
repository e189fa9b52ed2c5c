import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { TestStore } from './harness.js';

const SCHEMA = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../builder/schemas/build-metadata.schema.json');
const DOCKERFILE = 'FROM busybox\nARG V=1\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nCMD ["cat", "/b.txt"]\n';

/** A machine with the same busybox base (fixed timestamp: the same digest everywhere). */
async function machine(): Promise<TestStore> {
  const t = new TestStore();
  const r = await t.run(['import', '--timestamp', '0', makeBusyboxRootfs(path.join(t.tmp, 'rootfs')), 'busybox']);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  return t;
}

/** The --explain-cache lines of a build's output. */
function explained(stdout: string): string[] {
  return stdout.split('\n').filter((l) => /^STEP \d+\/\d+ .*: (hit|miss): /.test(l));
}

describe('tsbuild build --explain-cache and --metadata-file', () => {
  let reg: RunningRegistry;
  const machines: TestStore[] = [];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let validate: any;
  beforeAll(async () => {
    reg = await startRegistry();
    validate = new Ajv({ allErrors: true }).compile(JSON.parse(await fsp.readFile(SCHEMA, 'utf8')));
  });
  afterAll(async () => {
    await reg.stop();
    for (const m of machines) await m.cleanup();
  });

  it('a hit from --cache-from names the repository; a changed file names the file; both metadata files match the schema', async () => {
    const repo = `${reg.host}/team/explain-cache`;
    const a = await machine();
    const b = await machine();
    machines.push(a, b);
    const files = { Dockerfile: DOCKERFILE, 'a.txt': 'a\n' };
    const first = await a.run(['build', '--tls-verify=false', '--explain-cache', '--cache-to', repo, '-t', 'app', await a.context(files)]);
    expect(first.code).toBe(0);
    expect(explained(first.stdout)).toEqual([
      'STEP 2/5 ARG V=1: miss: no entry (first build)',
      'STEP 3/5 COPY a.txt /a.txt: miss: no entry (first build)',
      'STEP 4/5 RUN cat /a.txt > /b.txt: miss: no entry (first build)',
      'STEP 5/5 CMD ["cat", "/b.txt"]: miss: no entry (first build)',
    ]);

    const ctx = await b.context(files);
    const meta1 = path.join(b.tmp, 'meta1.json');
    const fromReg = await b.run(['build', '--tls-verify=false', '--explain-cache', '--cache-from', repo, '--metadata-file', meta1, '-t', 'app', ctx]);
    expect(fromReg.stderr).toBe('');
    expect(fromReg.code).toBe(0);
    const lines = explained(fromReg.stdout);
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(l).toMatch(new RegExp(`: hit: entry [0-9a-f]{12} from --cache-from ${repo.replace(/[.]/g, '\\.')}$`));
    const m1 = JSON.parse(await fsp.readFile(meta1, 'utf8'));
    expect(validate(m1), JSON.stringify(validate.errors)).toBe(true);
    expect(m1['containerimage.config.digest']).toBe(`sha256:${fromReg.stdout.trim().split('\n').at(-1)}`);
    expect(m1.steps.map((s: { line?: number }) => s.line)).toEqual([1, 2, 3, 4, 5]);
    expect(m1.steps[2]).toMatchObject({ instruction: 'COPY a.txt /a.txt', cache: { hit: true, source: 'registry' } });

    // Without the registry, the same context: local hits.
    const local = await b.run(['build', '--explain-cache', '-t', 'app', ctx]);
    for (const l of explained(local.stdout)) expect(l).toMatch(/: hit: entry [0-9a-f]{12} \(local\)$/);

    await fsp.writeFile(path.join(ctx, 'a.txt'), 'changed\n');
    const meta2 = path.join(b.tmp, 'meta2.json');
    const changed = await b.run(['build', '--explain-cache', '--metadata-file', meta2, '-t', 'app', ctx]);
    expect(changed.code).toBe(0);
    const l2 = explained(changed.stdout);
    expect(l2[0]).toMatch(/^STEP 2\/5 ARG V=1: hit: /);
    // B's entries came from the registry; B recorded their inputs when it took them.
    expect(l2[1]).toMatch(/^STEP 3\/5 COPY a\.txt \/a\.txt: miss: a\.txt content changed \(was [0-9a-f]{8}…, now [0-9a-f]{8}…\)$/);
    expect(l2[2]).toBe('STEP 4/5 RUN cat /a.txt > /b.txt: miss: parent changed at step 3');
    const m2 = JSON.parse(await fsp.readFile(meta2, 'utf8'));
    expect(validate(m2), JSON.stringify(validate.errors)).toBe(true);
    const run = m2.steps[3];
    expect(run.cache).toEqual({ hit: false, reason: 'parent changed at step 3' });
    expect(run.layer.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(run.layer.size).toBeGreaterThan(0);
    expect(typeof run.durationMs).toBe('number');

    // --no-cache says so on every step.
    const noCache = await b.run(['build', '--explain-cache', '--no-cache', '-t', 'app', ctx]);
    expect(explained(noCache.stdout).map((l) => l.replace(/^.*: miss: /, ''))).toEqual(['--no-cache', '--no-cache', '--no-cache', '--no-cache']);
  });

  it('the schema refuses a metadata file that lacks the image digest (it checks something)', () => {
    expect(validate({ 'containerimage.config.digest': `sha256:${'0'.repeat(64)}`, steps: [] })).toBe(false);
  });

  it('--metadata-file with several platforms is a usage error, before anything is built', async () => {
    const t = await machine();
    machines.push(t);
    const r = await t.run(['build', '--metadata-file', path.join(t.tmp, 'm.json'), '--platform', 'linux/amd64,linux/arm64', await t.context({ Dockerfile: 'FROM busybox\n' })]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--metadata-file is for a single-platform build/);
  });
});
