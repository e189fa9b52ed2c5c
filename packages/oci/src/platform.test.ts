import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from './errors.js';
import { formatPlatform, normalisePlatform, parsePlatform, samePlatformAs } from './platform.js';

const norm = (s: string) => formatPlatform(parsePlatform(s));

describe('parsePlatform normalises as containerd does', () => {
  it('maps uname and distribution architecture names to GOARCH', () => {
    expect(norm('linux/x86_64')).toBe('linux/amd64');
    expect(norm('linux/x86-64')).toBe('linux/amd64');
    expect(norm('linux/aarch64')).toBe('linux/arm64/v8');
    expect(norm('linux/i386')).toBe('linux/386');
    expect(norm('linux/armhf')).toBe('linux/arm/v7');
    expect(norm('linux/armel')).toBe('linux/arm/v6');
    expect(norm('Linux/AMD64')).toBe('linux/amd64');
  });

  it('writes the default variants out: arm is v7, arm64 v8; amd64 v1 is no variant', () => {
    expect(norm('linux/arm')).toBe('linux/arm/v7');
    expect(norm('linux/arm/6')).toBe('linux/arm/v6');
    expect(norm('linux/arm/v5')).toBe('linux/arm/v5');
    expect(norm('linux/arm64')).toBe('linux/arm64/v8');
    expect(norm('linux/arm64/8')).toBe('linux/arm64/v8');
    expect(norm('linux/amd64/v1')).toBe('linux/amd64');
    expect(norm('linux/amd64/v3')).toBe('linux/amd64/v3');
    expect(norm('linux/riscv64')).toBe('linux/riscv64');
  });

  it('refuses malformed specifiers with one line naming them', () => {
    for (const bad of ['linux', 'linux/', '/amd64', 'linux/amd64/v8/x', 'linux/amd 64', 'linux/amd64,', '']) {
      expect(() => parsePlatform(bad)).toThrow(InvalidArgumentError);
      expect(() => parsePlatform(bad)).toThrow(`invalid platform "${bad}": want os/arch[/variant]`);
    }
  });

  it('compares platforms after normalising them', () => {
    expect(samePlatformAs({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'aarch64', variant: 'v8' })).toBe(true);
    expect(samePlatformAs({ os: 'linux', architecture: 'arm' }, { os: 'linux', architecture: 'arm', variant: 'v6' })).toBe(false);
    expect(normalisePlatform({ os: 'linux', architecture: 'amd64', variant: '' })).toEqual({ os: 'linux', architecture: 'amd64' });
  });
});
