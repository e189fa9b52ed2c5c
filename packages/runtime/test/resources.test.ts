import { readFileSync } from 'node:fs';
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
