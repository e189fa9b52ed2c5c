import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blockDevice, parseVolumes, runtimeOptions } from './run-flags.js';

/** Any block device node of this machine, with its numbers as stat(1) prints them (hex). */
function someBlockDevice(): { path: string; major: number; minor: number } {
  const name = readdirSync('/dev').find((n) => statSync(`/dev/${n}`).isBlockDevice());
  if (name === undefined) throw new Error('no block device in /dev');
  const [major, minor] = execFileSync('stat', ['-c', '%t %T', `/dev/${name}`], { encoding: 'utf8' }).trim().split(' ').map((h) => parseInt(h, 16));
  return { path: `/dev/${name}`, major: major!, minor: minor! };
}

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

describe('cgroup flags (issue 20)', () => {
  const dev = someBlockDevice();
  const nums = { major: dev.major, minor: dev.minor };

  it('block I/O flags resolve DEVICE to its major:minor, rates with docker units', () => {
    expect(blockDevice('--device-read-bps', 'x', dev.path)).toEqual(nums);
    expect(
      runtimeOptions({
        'blkio-weight': 300,
        'blkio-weight-device': [`${dev.path}:200`],
        'device-read-bps': [`${dev.path}:1mb`],
        'device-write-bps': [`${dev.path}:10k`],
        'device-read-iops': [`${dev.path}:100`],
        'device-write-iops': [`${dev.path}:50`],
      }).resources,
    ).toEqual({
      blkioWeight: 300,
      blkioWeightDevice: [{ ...nums, rate: 200 }],
      deviceReadBps: [{ ...nums, rate: 1048576 }],
      deviceWriteBps: [{ ...nums, rate: 10240 }],
      deviceReadIops: [{ ...nums, rate: 100 }],
      deviceWriteIops: [{ ...nums, rate: 50 }],
    });
  });

  it('--memory-reservation, --memory-swappiness and --cgroup-parent go into resources', () => {
    expect(runtimeOptions({ memory: '64m', 'memory-reservation': '32m', 'memory-swappiness': 0, 'cgroup-parent': '/ci/builds' }).resources).toEqual({
      memory: 64 * 1024 * 1024,
      memoryReservation: 32 * 1024 * 1024,
      memorySwappiness: 0,
      cgroupParent: '/ci/builds',
    });
  });

  it('refuses bad values in one line naming the flag, before anything runs', () => {
    const cases: [Parameters<typeof runtimeOptions>[0], RegExp][] = [
      [{ 'device-read-bps': ['/no/such/dev:1mb'] }, /^--device-read-bps \/no\/such\/dev:1mb: \/no\/such\/dev: ENOENT$/],
      [{ 'device-write-bps': ['/dev/null:1mb'] }, /^--device-write-bps \/dev\/null:1mb: \/dev\/null is not a block device$/],
      [{ 'device-write-bps': [`${dev.path}:fast`] }, /^--device-write-bps .*: fast is not a rate such as 1mb or 512k$/],
      [{ 'device-write-bps': [`${dev.path}:0`] }, /: 0 is not a rate/],
      [{ 'device-read-iops': [`${dev.path}:-3`] }, /: -3 is not a positive integer$/],
      [{ 'device-read-iops': ['100'] }, /^--device-read-iops 100: want DEVICE:N$/],
      [{ 'blkio-weight': 5 }, /^--blkio-weight must be an integer from 10 to 1000: 5$/],
      [{ 'blkio-weight-device': [`${dev.path}:2000`] }, /^--blkio-weight-device must be an integer from 10 to 1000: 2000$/],
      [{ 'memory-swappiness': 101 }, /^--memory-swappiness must be an integer from 0 to 100: 101$/],
      [{ memory: '64m', 'memory-reservation': '128m' }, /^--memory-reservation \(134217728\) must not exceed memory/],
      [{ 'cgroup-parent': 'builds' }, /^--cgroup-parent must be an absolute path .*: builds$/],
      [{ 'cgroup-parent': '/a/../..' }, /^--cgroup-parent must be an absolute path inside the cgroup hierarchy, without \. or \.\. .*: \/a\/\.\.\/\.\.$/],
    ];
    for (const [flags, re] of cases) expect(() => runtimeOptions(flags), JSON.stringify(flags)).toThrow(re);
  });
});
