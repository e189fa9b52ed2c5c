import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore } from './harness.js';

/** Build checks (issue 19): `build --check`, the warning lines of a build, `# check=skip=` and `error=true`. */
describe('tsbuild build checks', () => {
  const t = new TestStore();
  beforeAll(async () => {
    await t.importBusybox();
  });
  afterAll(() => t.cleanup());

  it('--check prints each finding as BuildKit does and exits 1, building nothing', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox AS Build\nMAINTAINER me\nRUN touch /made\nCMD echo hi\n' });
    const r = await t.run(['build', '--check', '-t', 'nope', ctx]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual([
      "Warning: Dockerfile:1: StageNameCasing: Stage name 'Build' should be lowercase",
      'Warning: Dockerfile:2: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label',
      'Warning: Dockerfile:4: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
    ]);
    expect(r.code).toBe(1);
    expect((await t.run(['images'])).stdout).not.toContain('nope');
  });

  it('--check of a clean Dockerfile prints nothing and exits 0; UndefinedVar uses the stored base image', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nARG V=1\nWORKDIR /app\nENV P=$PATH:/app\nCMD ["sh"]\n' });
    const r = await t.run(['build', '--check', ctx]);
    expect(r.stdout).toBe('');
    expect(r.code).toBe(0);
    const bad = await t.context({ Dockerfile: 'FROM busybox\nENV P=$PAHT:/app\n' });
    const b = await t.run(['build', '--check', bad]);
    expect(b.stdout).toBe("Warning: Dockerfile:2: UndefinedVar: Usage of undefined variable '$PAHT' (did you mean $PATH?)\n");
    expect(b.code).toBe(1);
  });

  it('a build prints one warning line per finding (CopyIgnoredFile and UndefinedVar included) and still succeeds', async () => {
    const ctx = await t.context({
      Dockerfile: 'FROM busybox\nEXPOSE 80/TCP\nCOPY kept.txt /kept.txt\nLABEL v=$NOPE\n',
      'kept.txt': 'x\n',
    });
    const r = await t.run(['build', ctx]);
    expect(r.code).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([
      "Warning: Dockerfile:2: ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
      "Warning: Dockerfile:4: UndefinedVar: Usage of undefined variable '$NOPE'",
    ]);
    const ignored = await t.context({ Dockerfile: 'FROM busybox\nCOPY secret.txt /s\n', 'secret.txt': 's\n', '.dockerignore': 'secret.txt\n' });
    const c = await t.run(['build', '--check', ignored]);
    expect(c.stdout).toBe('Warning: Dockerfile:2: CopyIgnoredFile: Attempting to Copy file "secret.txt" that is excluded by .dockerignore\n');
    expect(c.code).toBe(1);
  });

  it('# check=skip= silences the rules it names, and skip=all every rule', async () => {
    const some = await t.context({ Dockerfile: '# check=skip=JSONArgsRecommended\nFROM busybox\nMAINTAINER me\nCMD echo hi\n' });
    const r = await t.run(['build', '--check', some]);
    expect(r.stdout).toBe('Warning: Dockerfile:3: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label\n');
    const all = await t.context({ Dockerfile: '# check=skip=all\nFROM busybox\nMAINTAINER me\nCMD echo hi\n' });
    const a = await t.run(['build', '--check', all]);
    expect(a.stdout).toBe('');
    expect(a.code).toBe(0);
  });

  it('# check=error=true fails the build with exit 1 after printing the findings, before any step runs', async () => {
    const ctx = await t.context({ Dockerfile: '# check=error=true\nFROM busybox\nRUN touch /made\nCMD echo hi\n' });
    const r = await t.run(['build', '-t', 'failed', ctx]);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('RUN touch');
    expect(r.stderr.trim().split('\n')).toEqual([
      'Warning: Dockerfile:4: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
      'Error: lint violation found for rules: JSONArgsRecommended (# check=error=true in Dockerfile)',
    ]);
    expect((await t.run(['images'])).stdout).not.toContain('failed');
    const ok = await t.context({ Dockerfile: '# check=error=true\nFROM busybox\nCMD ["echo", "hi"]\n' });
    expect((await t.run(['build', ok])).code).toBe(0);
  });
});
