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

  it('reject unknown names', () => {
    expect(() => resolveCapabilities({ add: ['CAP_FLY'] }, 40)).toThrow(/--cap-add: unknown capability CAP_FLY/);
    expect(() => resolveCapabilities({ add: ['BPF'] }, 38)).toThrow(/unknown capability BPF/);
  });
});
