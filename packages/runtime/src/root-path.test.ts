import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPath, resolveInRoot } from './root-path.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tsbuild-rootpath-'));
  mkdirSync(join(root, 'opt/app'), { recursive: true });
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  symlinkSync('/opt/app', join(root, 'app'));
  symlinkSync('/../../../../tmp/escape', join(root, 'abs-escape'));
  symlinkSync('../../../../tmp/escape', join(root, 'rel-escape'));
  symlinkSync('usr/lib', join(root, 'lib'));
  symlinkSync('../../lib', join(root, 'usr/lib/up'));
  symlinkSync('loop2', join(root, 'loop1'));
  symlinkSync('loop1', join(root, 'loop2'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('resolveInRoot', () => {
  it('keeps plain paths and clamps .. at the root', () => {
    expect(resolveInRoot(root, '/')).toBe('/');
    expect(resolveInRoot(root, '/a/b/../c')).toBe('/a/c');
    expect(resolveInRoot(root, '/../../etc/passwd')).toBe('/etc/passwd');
    expect(resolveInRoot(root, 'relative/./x')).toBe('/relative/x');
  });

  it('resolves absolute and relative symlinks inside the root', () => {
    expect(resolveInRoot(root, '/app/x')).toBe('/opt/app/x');
    expect(resolveInRoot(root, '/abs-escape/f')).toBe('/tmp/escape/f');
    expect(resolveInRoot(root, '/rel-escape/f')).toBe('/tmp/escape/f');
    expect(resolveInRoot(root, '/lib/up/up/z')).toBe('/usr/lib/z');
  });

  it('follows a final symlink only when asked', () => {
    expect(resolveInRoot(root, '/app')).toBe('/opt/app');
    expect(resolveInRoot(root, '/app', false)).toBe('/app');
    expect(resolveInRoot(root, '/lib/x', false)).toBe('/usr/lib/x');
  });

  it('fails on a symlink loop with ELOOP', () => {
    expect(() => resolveInRoot(root, '/loop1/x')).toThrow(expect.objectContaining({ code: 'ELOOP' }));
  });

  it('maps a resolved path onto the host', () => {
    expect(hostPath('/r', '/')).toBe('/r');
    expect(hostPath('/r', '/a/b')).toBe('/r/a/b');
  });
});
