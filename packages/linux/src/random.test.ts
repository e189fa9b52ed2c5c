import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { randomHex } from './random.js';

describe('randomHex', () => {
  it('gives the number of bytes asked for, in lower-case hex, different every time', () => {
    const ids = Array.from({ length: 64 }, () => randomHex(32));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(randomHex(3)).toMatch(/^[0-9a-f]{6}$/);
    expect(randomHex(0)).toBe('');
  });

  it('does not load node:crypto', () => {
    // A process of its own (the built module): the test runner has loaded node:crypto long before.
    const script = `import('${new URL('../dist/random.js', import.meta.url).href}').then((m) => { m.randomHex(16); process.stdout.write(String(process.moduleLoadList.some((n) => n === 'NativeModule crypto'))); })`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('false');
  });
});
