import { describe, expect, it } from 'vitest';
import type { Descriptor, Platform } from '@tsbuild/oci';
import { selectPlatform } from './platform-select.js';

const d = (n: number, platform?: Platform): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: n,
  ...(platform !== undefined ? { platform } : {}),
});

describe('selectPlatform', () => {
  const list = [
    d(1, { os: 'linux', architecture: 'amd64' }),
    d(2, { os: 'linux', architecture: 'arm', variant: 'v6' }),
    d(3, { os: 'linux', architecture: 'arm', variant: 'v7' }),
    d(4, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    d(5, { os: 'unknown', architecture: 'unknown' }),
    d(6),
  ];
  it('matches os and architecture', () => {
    expect(selectPlatform(list, { os: 'linux', architecture: 'amd64' })?.size).toBe(1);
  });
  it('takes the exact ARM variant, then older ones the CPU also runs', () => {
    expect(selectPlatform(list, { os: 'linux', architecture: 'arm', variant: 'v7' })?.size).toBe(3);
    expect(selectPlatform(list, { os: 'linux', architecture: 'arm', variant: 'v6' })?.size).toBe(2);
    expect(selectPlatform([list[1]!], { os: 'linux', architecture: 'arm', variant: 'v7' })?.size).toBe(2);
    expect(selectPlatform([list[2]!], { os: 'linux', architecture: 'arm', variant: 'v6' })).toBeUndefined();
  });
  it('treats arm64 without a variant as v8', () => {
    expect(selectPlatform(list, { os: 'linux', architecture: 'arm64' })?.size).toBe(4);
    expect(selectPlatform([d(7, { os: 'linux', architecture: 'arm64' })], { os: 'linux', architecture: 'arm64', variant: 'v8' })?.size).toBe(7);
  });
  it('never picks attestations or entries without a platform, and answers undefined when nothing fits', () => {
    expect(selectPlatform(list, { os: 'windows', architecture: 'amd64' })).toBeUndefined();
    expect(selectPlatform([d(5, { os: 'unknown', architecture: 'unknown' }), d(6)], { os: 'linux', architecture: 'amd64' })).toBeUndefined();
  });
});
