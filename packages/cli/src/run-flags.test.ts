import { describe, expect, it } from 'vitest';
import { parseVolumes, runtimeOptions } from './run-flags.js';

describe('run flags', () => {
  it('-v HOST:CONTAINER[:OPTIONS] becomes a recursive bind mount, options kept', () => {
    expect(parseVolumes(['/tmp:/data', '/etc/hostname:/x/../name:ro,nosuid'])).toEqual([
      { destination: '/data', type: 'bind', source: '/tmp', options: ['rbind'] },
      { destination: '/name', type: 'bind', source: '/etc/hostname', options: ['rbind', 'ro', 'nosuid'] },
    ]);
  });

  it('-v refuses, in one line, what it cannot bind', () => {
    const cases: [string, RegExp][] = [
      ['/data', /want HOST:CONTAINER\[:OPTIONS\] \(anonymous volumes are not supported\)$/],
      ['cache:/data', /named volumes are not supported: give an absolute host path instead of cache$/],
      ['./dir:/data', /host path \.\/dir must be absolute$/],
      ['/tmp:data', /container path data must be absolute$/],
      ['/no/such/dir:/data', /host path \/no\/such\/dir: ENOENT$/],
      ['/tmp:/data:Z', /Z: SELinux relabelling is not supported$/],
      ['/tmp:/data:ro,shared', /unknown option shared/],
      ['/tmp:/data:ro:x', /want HOST:CONTAINER/],
    ];
    for (const [v, re] of cases) {
      expect(() => parseVolumes([v]), v).toThrow(re);
      expect(() => parseVolumes([v]), v).toThrow(new RegExp(`^--volume ${v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: [^\\n]+$`));
    }
  });

  it('--security-opt systempaths=unconfined: no masked and no read-only paths', () => {
    expect(runtimeOptions({ 'security-opt': ['systempaths=unconfined'] })).toEqual({ maskedPaths: [], readonlyPaths: [] });
    expect(runtimeOptions({})).toEqual({});
    expect(() => runtimeOptions({ 'security-opt': ['systempaths=confined'] })).toThrow(/^--security-opt systempaths=confined: want seccomp=unconfined\|PROFILE.json, systempaths=unconfined or no-new-privileges$/);
  });
});
