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

  it('--security-opt systempaths=unconfined: no masked and no read-only paths', async () => {
    expect(await runtimeOptions({ 'security-opt': ['systempaths=unconfined'] })).toEqual({ maskedPaths: [], readonlyPaths: [] });
    expect(await runtimeOptions({})).toEqual({});
    await expect(runtimeOptions({ 'security-opt': ['systempaths=confined'] })).rejects.toThrow(/^--security-opt systempaths=confined: want seccomp=unconfined\|PROFILE.json, systempaths=unconfined, no-new-privileges, label=.*, apparmor=PROFILE\|unconfined$/);
  });

  it('--security-opt label=… and apparmor=… are parsed by the runtime\'s one parser', async () => {
    expect(await runtimeOptions({ 'security-opt': ['label=user:system_u', 'label:role:system_r', 'label=level:s0-s0:c0.c1023', 'apparmor=unconfined', 'no-new-privileges', 'seccomp=unconfined'] })).toEqual({
      label: { user: 'system_u', role: 'system_r', level: 's0-s0:c0.c1023' },
      apparmorProfile: 'unconfined',
      noNewPrivileges: true,
      seccomp: 'unconfined',
    });
    expect(await runtimeOptions({ 'security-opt': ['label=disable'] })).toEqual({ label: { disable: true } });
    await expect(runtimeOptions({ 'security-opt': ['label=nested'] })).rejects.toThrow(/^--security-opt label=nested: want label=user:U, role:R, type:T, level:L, filetype:T or disable$/);
  });

  it('--ulimit, --oom-score-adj, --device, --shm-size and --tmpfs', async () => {
    expect(await runtimeOptions({ ulimit: ['nofile=1024:2048', 'core=-1', 'nproc=10'], 'oom-score-adj': '-17', device: ['/dev/null', '/dev/zero:/dev/z', '/dev/full:r', '/dev/zero:/dev/zz:rw'], 'shm-size': '1g', tmpfs: ['/run', '/cache:size=1m,exec'] })).toEqual({
      ulimits: [
        { name: 'nofile', soft: 1024, hard: 2048 },
        { name: 'core', soft: -1, hard: -1 },
        { name: 'nproc', soft: 10, hard: 10 },
      ],
      oomScoreAdj: -17,
      devices: [{ hostPath: '/dev/null' }, { hostPath: '/dev/zero', containerPath: '/dev/z' }, { hostPath: '/dev/full', access: 'r' }, { hostPath: '/dev/zero', containerPath: '/dev/zz', access: 'rw' }],
      shmSize: 1024 ** 3,
      tmpfs: [
        { destination: '/run', options: ['rw', 'noexec', 'nosuid', 'nodev'] },
        { destination: '/cache', options: ['rw', 'noexec', 'nosuid', 'nodev', 'size=1m', 'exec'] },
      ],
    });
  });

  it('refuses each bad process flag in one line naming it', async () => {
    const cases: [Parameters<typeof runtimeOptions>[0], RegExp][] = [
      [{ ulimit: ['nofile'] }, /^--ulimit nofile: want NAME=SOFT\[:HARD\], e\.g\. nofile=1024:2048$/],
      [{ ulimit: ['nofile=1:2:3'] }, /^--ulimit nofile=1:2:3: want NAME=SOFT\[:HARD\]/],
      [{ ulimit: ['as=1'] }, /^--ulimit as=1: unknown limit as \(want one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack\)$/],
      [{ ulimit: ['nofile=-1:10'] }, /^--ulimit nofile=-1:10: soft limit -1 is above hard limit 10$/],
      [{ ulimit: ['nofile=-2'] }, /^--ulimit nofile=-2: -2 is not a limit/],
      [{ 'oom-score-adj': '-1001' }, /^--oom-score-adj -1001: want an integer from -1000 to 1000$/],
      [{ device: ['dev/null'] }, /^--device dev\/null: the host path must be absolute$/],
      [{ device: ['/dev/null:/dev/a:/dev/b:rw'] }, /^--device \/dev\/null:\/dev\/a:\/dev\/b:rw: want HOST\[:CONTAINER\[:ACCESS\]\]/],
      [{ device: ['/dev/null:/dev/pts/9'] }, /^--device \/dev\/null:\/dev\/pts\/9: \/dev\/pts\/9 is made by the runtime/],
      [{ device: ['/dev'] }, /^--device \/dev: not a device node/],
      [{ 'shm-size': 'lots' }, /^--shm-size=lots: want a size such as 64m or 1g$/],
      [{ 'shm-size': '-1' }, /^--shm-size -1: want a size above 0, such as 64m$/],
      [{ tmpfs: ['/'] }, /^--tmpfs \/: cannot mount over \/$/],
      [{ tmpfs: ['/run:shared'] }, /^--tmpfs \/run:shared: unknown option shared/],
    ];
    for (const [f, re] of cases) await expect(runtimeOptions(f), JSON.stringify(f)).rejects.toThrow(re);
  });
});

describe('cgroup flags (issue 20)', () => {
  const dev = someBlockDevice();
  const nums = { major: dev.major, minor: dev.minor };

  it('block I/O flags resolve DEVICE to its major:minor, rates with docker units', async () => {
    expect(blockDevice('--device-read-bps', 'x', dev.path)).toEqual(nums);
    expect(
      (await runtimeOptions({
        'blkio-weight': 300,
        'blkio-weight-device': [`${dev.path}:200`],
        'device-read-bps': [`${dev.path}:1mb`],
        'device-write-bps': [`${dev.path}:10k`],
        'device-read-iops': [`${dev.path}:100`],
        'device-write-iops': [`${dev.path}:50`],
      })).resources,
    ).toEqual({
      blkioWeight: 300,
      blkioWeightDevice: [{ ...nums, rate: 200 }],
      deviceReadBps: [{ ...nums, rate: 1048576 }],
      deviceWriteBps: [{ ...nums, rate: 10240 }],
      deviceReadIops: [{ ...nums, rate: 100 }],
      deviceWriteIops: [{ ...nums, rate: 50 }],
    });
  });

  it('--memory-reservation, --memory-swappiness and --cgroup-parent go into resources', async () => {
    expect((await runtimeOptions({ memory: '64m', 'memory-reservation': '32m', 'memory-swappiness': 0, 'cgroup-parent': '/ci/builds' })).resources).toEqual({
      memory: 64 * 1024 * 1024,
      memoryReservation: 32 * 1024 * 1024,
      memorySwappiness: 0,
      cgroupParent: '/ci/builds',
    });
  });

  it('refuses bad values in one line naming the flag, before anything runs', async () => {
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
    for (const [flags, re] of cases) await expect(runtimeOptions(flags), JSON.stringify(flags)).rejects.toThrow(re);
  });
});
