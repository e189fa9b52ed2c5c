import { describe, expect, it } from 'vitest';
import { capabilityMask, resolveCapabilities } from './capabilities.js';

describe('capabilities', () => {
  it("default to docker's set, mask 0xa80425fb", () => {
    expect(capabilityMask(resolveCapabilities(undefined, 40)).toString(16)).toBe('a80425fb');
  });

  it('take --cap-add/--cap-drop names with or without CAP_, in any case, and ALL', () => {
    expect(capabilityMask(resolveCapabilities({ drop: ['chown'] }, 40)).toString(16)).toBe('a80425fa');
    expect(resolveCapabilities({ add: ['SYS_ADMIN'] }, 40)).toContain('CAP_SYS_ADMIN');
    expect(resolveCapabilities({ drop: ['ALL'], add: ['CAP_NET_RAW'] }, 40)).toEqual(['CAP_NET_RAW']);
    expect(resolveCapabilities({ add: ['ALL'] }, 40)).toHaveLength(41);
    expect(resolveCapabilities({ add: ['ALL'] }, 37)).toHaveLength(38); // an older kernel knows fewer
    expect(resolveCapabilities({ add: ['NET_ADMIN'], drop: ['NET_ADMIN'] }, 40)).toContain('CAP_NET_ADMIN');
  });

  it('ALL is every capability tsbuild holds; one it lacks, named or default, is a one-line error', () => {
    const noSysResource = ((1n << 41n) - 1n) & ~(1n << 24n); // this kind of host: CapBnd 000001fffeffffff
    const all = resolveCapabilities({ add: ['ALL'] }, 40, noSysResource);
    expect(all).toHaveLength(40);
    expect(all).not.toContain('CAP_SYS_RESOURCE');
    expect(() => resolveCapabilities({ add: ['SYS_RESOURCE'] }, 40, noSysResource)).toThrow(/^cannot give the container CAP_SYS_RESOURCE: tsbuild itself does not hold it/);
    const noMknod = ((1n << 41n) - 1n) & ~(1n << 27n);
    expect(() => resolveCapabilities(undefined, 40, noMknod)).toThrow(/CAP_MKNOD/);
    expect(resolveCapabilities({ drop: ['MKNOD'] }, 40, noMknod)).not.toContain('CAP_MKNOD');
  });

  it('reject unknown names', () => {
    expect(() => resolveCapabilities({ add: ['CAP_FLY'] }, 40)).toThrow(/--cap-add: unknown capability CAP_FLY/);
    expect(() => resolveCapabilities({ add: ['BPF'] }, 38)).toThrow(/unknown capability BPF/);
  });
});
