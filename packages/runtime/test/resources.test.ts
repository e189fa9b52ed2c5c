import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run, type RunSpec } from '../src/index.js';
import { processesWithEnv, waitFor, useBusyboxFixture, shIn } from './busybox-rootfs.js';

/** cgroup v1 limits enforced for real (this machine is v1 hybrid); v2 file writes are unit-tested in src/cgroups. */
const fx = useBusyboxFixture({ noLeftoverCgroups: true });

const sh = (script: string, extra: Partial<RunSpec> = {}) => shIn(fx, script, extra);

/** The host-side cgroup directory of `pid` in a v1 hierarchy. */
function cgroupDir(pid: number, controller: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  return `/sys/fs/cgroup/${controller}${line?.split(':')[2] ?? '?'}`;
}

describe('cgroup limits (v1, real kernel)', () => {
  it('a RUN that allocates 200 MB under memory 64 MiB is OOM-killed and reported as such', async () => {
    // dd allocates its 200 MB block and fills it from /dev/zero: the pages are really touched.
    const r = await sh('dd bs=200M count=1 if=/dev/zero of=/dev/null', { resources: { memory: 64 * 1024 * 1024 } });
    expect(r.oomKilled).toBe(true);
    expect(r.exitCode).toBe(137);
    const ok = await sh('dd bs=20M count=1 if=/dev/zero of=/dev/null 2>/dev/null; echo fine', { resources: { memory: 64 * 1024 * 1024 } });
    expect(ok).toMatchObject({ exitCode: 0, oomKilled: false, out: 'fine\n' });
    // Without a limit the same allocation succeeds.
    const free = await sh('dd bs=200M count=1 if=/dev/zero of=/dev/null 2>/dev/null; echo $?');
    expect(free).toMatchObject({ out: '0\n', oomKilled: false });
  });

  it('with an init, the command is in the run cgroups (tsbuild moves the helper, the child of the init)', async () => {
    const r = await sh('dd bs=200M count=1 if=/dev/zero of=/dev/null', { resources: { memory: 64 * 1024 * 1024 }, init: true });
    expect(r.oomKilled).toBe(true);
    const pids = await sh('for i in $(seq 30); do sleep 1 & done', { resources: { pidsLimit: 10 }, init: true });
    expect(pids.err).toContain("can't fork");
  });

  it('pidsLimit 20 stops a fork loop', async () => {
    const r = await sh('for i in $(seq 100); do sleep 5 & done; echo started', { resources: { pidsLimit: 20 } });
    expect(r.err).toContain("can't fork");
    const count = await sh('for i in $(seq 10); do sleep 5 & done; echo ok', { resources: { pidsLimit: 20 } });
    expect(count.err).toBe('');
  });

  it('cpus 0.25: a busy loop gets at most a third of the wall time it runs', async () => {
    // utime+stime of the loop after 1.5 s of wall time, in clock ticks (USER_HZ 100).
    const script = 'sh -c "while :; do :; done" & p=$!; sleep 1.5; set -- $(cat /proc/$p/stat); kill $p; echo $(( ${14} + ${15} ))';
    const limited = await sh(script, { resources: { cpus: 0.25 } });
    const ticks = Number(limited.out.trim());
    expect(ticks).toBeGreaterThan(10);
    expect(ticks * 3).toBeLessThanOrEqual(150); // wall (150 ticks) >= 3x CPU
    // (No unlimited baseline here: test files run in parallel and share the CPUs.)
  });

  it('cpusetCpus 0 pins the command to CPU 0', async () => {
    const r = await sh('grep Cpus_allowed_list /proc/self/status', { resources: { cpusetCpus: '0' } });
    expect(r.out).toBe('Cpus_allowed_list:\t0\n');
  });

  it('writes every limit into the cgroups the command runs in, and removes them afterwards', async () => {
    const marker = `TSBUILD_CG_TEST=${process.pid}-${Date.now()}`;
    const ac = new AbortController();
    const p = run(
      {
        args: ['sleep', '1000'],
        env: ['PATH=/bin', marker],
        cwd: '/',
        rootfs: fx.overlay().mounts,
        scratchDir: fx.scratch(),
        resources: { memory: 100 * 1024 * 1024, memorySwap: 150 * 1024 * 1024, cpuShares: 512, cpus: 1.5, cpusetCpus: '0-1', pidsLimit: 33 },
      },
      { stdout: 'inherit', stderr: 'inherit' },
      ac.signal,
    );
    await waitFor('sleep', () => processesWithEnv(marker).length === 1);
    const pid = processesWithEnv(marker)[0];
    const read = (c: string, f: string): string => readFileSync(`${cgroupDir(pid, c)}/${f}`, 'utf8').trim();
    expect(cgroupDir(pid, 'memory')).toMatch(/\/memory\/tsbuild\/tsbuild-\d+-[0-9a-f]+$/);
    expect(read('memory', 'memory.limit_in_bytes')).toBe(String(100 * 1024 * 1024));
    expect(read('memory', 'memory.memsw.limit_in_bytes')).toBe(String(150 * 1024 * 1024));
    expect(read('cpu', 'cpu.shares')).toBe('512');
    expect(read('cpu', 'cpu.cfs_quota_us')).toBe('150000');
    expect(read('cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(read('cpuset', 'cpuset.cpus')).toBe('0-1');
    expect(read('pids', 'pids.max')).toBe('33');
    // The unified hierarchy tracks it too (cgroup.kill, cgroup.events).
    const unified = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    expect(unified).toMatch(/^0::\/tsbuild\/tsbuild-\d+-[0-9a-f]+$/);
    ac.abort();
    await expect(p).rejects.toThrow('cancelled');
    // afterEach: no tsbuild cgroup left
  });

  it('rejects limits docker would reject', async () => {
    await expect(sh('true', { resources: { memorySwap: 10 * 1024 * 1024 } })).rejects.toThrow(/memorySwap needs memory/);
    await expect(sh('true', { resources: { memory: 64 * 1024 * 1024, memorySwap: 32 * 1024 * 1024 } })).rejects.toThrow(/at least memory/);
    await expect(sh('true', { resources: { cpusetCpus: 'zero' } })).rejects.toThrow(/CPU list/);
  });
});

describe('block I/O, memory reservation and swappiness, devices, cgroup parent (v1, real kernel)', () => {
  /** A loop device over a 16 MiB file, detached after the test. */
  async function withLoopDevice<T>(f: (dev: string, major: number, minor: number) => Promise<T>): Promise<T> {
    const file = join(fx.dir, `disk-${Date.now()}`);
    execFileSync('truncate', ['-s', '16M', file]);
    const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
    try {
      const [major, minor] = execFileSync('stat', ['-c', '%t %T', dev], { encoding: 'utf8' }).trim().split(' ').map((h) => parseInt(h, 16));
      return await f(dev, major!, minor!);
    } finally {
      execFileSync('losetup', ['-d', dev]);
    }
  }

  it('device write bps 1 MB/s: writing 3 MiB with O_DIRECT to a loop device takes at least 2.5 s (and well under that without)', async () => {
    await withLoopDevice(async (dev, major, minor) => {
      const mounts = [{ destination: '/blk', type: 'bind' as const, source: dev, options: [] }];
      // The devices cgroup lets the container open the node only with a rule for it (--device's).
      const devices = [{ type: 'b' as const, major, minor, access: 'rw' }];
      const script = 'dd if=/dev/zero of=/blk bs=64k count=48 oflag=direct 2>&1 | tail -1';
      let t = Date.now();
      const free = await sh(script, { mounts, resources: { devices } });
      const freeMs = Date.now() - t;
      expect(free).toMatchObject({ exitCode: 0, out: expect.stringMatching(/^48\+0 records out/) });
      t = Date.now();
      const limited = await sh(script, { mounts, resources: { devices, deviceWriteBps: [{ major, minor, rate: 1024 * 1024 }] } });
      const limitedMs = Date.now() - t;
      expect(limited.exitCode).toBe(0);
      expect(limited.out).toMatch(/^48\+0 records out/);
      expect(limitedMs).toBeGreaterThanOrEqual(2500);
      expect(freeMs).toBeLessThan(2000);
    });
  });

  it('writes blkio throttles, the soft limit, swappiness and the device rules into the cgroups the command runs in', async () => {
    await withLoopDevice(async (_dev, major, minor) => {
      const marker = `TSBUILD_CG_TEST=${process.pid}-${Date.now()}`;
      const ac = new AbortController();
      const d = { major, minor };
      const p = run(
        {
          args: ['sleep', '1000'],
          env: ['PATH=/bin', marker],
          cwd: '/',
          rootfs: fx.overlay().mounts,
          scratchDir: fx.scratch(),
          resources: {
            memory: 100 * 1024 * 1024,
            memoryReservation: 50 * 1024 * 1024,
            memorySwappiness: 7,
            deviceReadBps: [{ ...d, rate: 2097152 }],
            deviceWriteBps: [{ ...d, rate: 1048576 }],
            deviceReadIops: [{ ...d, rate: 300 }],
            deviceWriteIops: [{ ...d, rate: 200 }],
            devices: [{ type: 'b', ...d, access: 'rw' }],
          },
        },
        { stdout: 'inherit', stderr: 'inherit' },
        ac.signal,
      );
      await waitFor('sleep', () => processesWithEnv(marker).length === 1);
      const pid = processesWithEnv(marker)[0];
      const read = (c: string, f: string): string => readFileSync(`${cgroupDir(pid, c)}/${f}`, 'utf8').trim();
      expect(read('memory', 'memory.soft_limit_in_bytes')).toBe(String(50 * 1024 * 1024));
      expect(read('memory', 'memory.swappiness')).toBe('7');
      expect(read('blkio', 'blkio.throttle.read_bps_device')).toBe(`${major}:${minor} 2097152`);
      expect(read('blkio', 'blkio.throttle.write_bps_device')).toBe(`${major}:${minor} 1048576`);
      expect(read('blkio', 'blkio.throttle.read_iops_device')).toBe(`${major}:${minor} 300`);
      expect(read('blkio', 'blkio.throttle.write_iops_device')).toBe(`${major}:${minor} 200`);
      const list = read('devices', 'devices.list').split('\n');
      expect(list).not.toContain('a *:* rwm');
      expect(list).toEqual(expect.arrayContaining(['c *:* m', 'b *:* m', 'c 1:3 rwm', 'c 136:* rwm', `b ${major}:${minor} rw`]));
      ac.abort();
      await expect(p).rejects.toThrow('cancelled');
    });
  });

  it('the devices cgroup: a node the container makes for a device outside the list cannot be opened; an added rule opens it', async () => {
    // Written, not read: reading /dev/kmsg needs CAP_SYSLOG as well (dmesg_restrict).
    const script = 'mknod /kmsg c 1 11 && if true >/kmsg; then echo opened; else echo denied; fi; true >/dev/null && echo null-ok';
    const denied = await sh(script);
    expect(denied.out).toBe('denied\nnull-ok\n');
    expect(denied.err).toMatch(/Operation not permitted/);
    const allowed = await sh(script, { resources: { devices: [{ type: 'c', major: 1, minor: 11, access: 'w' }] } });
    expect(allowed.out).toBe('opened\nnull-ok\n');
    const readOnly = await sh(script, { resources: { devices: [{ type: 'c', major: 1, minor: 11, access: 'r' }] } });
    expect(readOnly.out).toBe('denied\nnull-ok\n');
  });

  it('cgroupParent: the cgroups go under it in every hierarchy; the levels the run made are removed, one that existed is kept', async () => {
    const top = `tsbuild-parent-test-${process.pid}`;
    const existing = `/sys/fs/cgroup/memory/${top}`;
    mkdirSync(existing);
    try {
      const marker = `TSBUILD_CG_TEST=${process.pid}-${Date.now()}`;
      const ac = new AbortController();
      const p = run(
        { args: ['sleep', '1000'], env: ['PATH=/bin', marker], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch(), resources: { memory: 64 * 1024 * 1024, pidsLimit: 50, cgroupParent: `/${top}/ci` } },
        { stdout: 'inherit', stderr: 'inherit' },
        ac.signal,
      );
      await waitFor('sleep', () => processesWithEnv(marker).length === 1);
      const lines = readFileSync(`/proc/${processesWithEnv(marker)[0]}/cgroup`, 'utf8').split('\n');
      for (const c of ['memory', 'pids', 'devices']) expect(lines.find((l) => l.split(':')[1]?.split(',').includes(c))).toMatch(new RegExp(`:/${top}/ci/tsbuild-\\d+-[0-9a-f]+$`));
      expect(lines.find((l) => l.startsWith('0::'))).toMatch(new RegExp(`^0::/${top}/ci/tsbuild-`));
      ac.abort();
      await expect(p).rejects.toThrow('cancelled');
      expect(existsSync(existing)).toBe(true);
      expect(existsSync(`${existing}/ci`)).toBe(false);
      for (const h of ['pids', 'devices', 'unified']) expect(existsSync(`/sys/fs/cgroup/${h}/${top}`), h).toBe(false);
    } finally {
      rmdirSync(existing);
    }
  });

  it('refuses, before anything runs and leaving nothing, what cannot be applied or is out of range', async () => {
    await expect(sh('true', { resources: { memorySwappiness: 101 } })).rejects.toThrow(/^run: resources.memorySwappiness must be an integer from 0 to 100: 101$/);
    await expect(sh('true', { resources: { cgroupParent: '../x' } })).rejects.toThrow(/cgroupParent must be an absolute path/);
    // CFQ's blkio.weight left the kernel in 5.0 and this one has no BFQ loaded.
    if (!existsSync('/sys/fs/cgroup/blkio/blkio.weight') && !existsSync('/sys/fs/cgroup/blkio/blkio.bfq.weight')) {
      await expect(sh('true', { resources: { memory: 64 * 1024 * 1024, blkioWeight: 500 } })).rejects.toThrow(/^block I\/O weight is not supported here: .* has neither blkio.bfq.weight nor blkio.weight/);
    } else {
      expect(await sh('cat /sys/fs/cgroup/blkio/blkio*weight', { resources: { blkioWeight: 500 } })).toMatchObject({ exitCode: 0 });
    }
    // afterEach: no tsbuild cgroup left
  });
});
