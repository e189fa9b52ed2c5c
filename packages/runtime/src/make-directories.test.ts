import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeDirectories } from './make-directories.js';

describe('makeDirectories', () => {
  it('makes every missing component with the mode asked for, and accepts what exists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsbuild-mkdirs-'));
    try {
      makeDirectories(join(dir, 'a/b/c'), 0o750);
      expect(statSync(join(dir, 'a/b/c')).isDirectory()).toBe(true);
      expect(statSync(join(dir, 'a/b')).mode & 0o777).toBe(0o750 & ~process.umask());
      makeDirectories(join(dir, 'a/b/c'));
      writeFileSync(join(dir, 'f'), '');
      expect(() => makeDirectories(join(dir, 'f/x'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails at once where procfs refuses a directory (node\'s recursive mkdirSync spins forever there)', () => {
    const t0 = Date.now();
    expect(() => makeDirectories('/proc/nope/deeper')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => makeDirectories('/proc/self/fd/99999')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(existsSync('/proc/nope')).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
