import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../src/index.js';
import { findInit, staticallyLinked } from '../src/init.js';
import { Collector, processesWithEnv, waitFor, useBusyboxFixture } from './busybox-rootfs.js';

const fx = useBusyboxFixture({ noLeftoverCgroups: true });

function ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

describe('init', () => {
  it('runs tini as PID 1 with the command as its child, and reaps orphaned zombies', async () => {
    // The subshell exits at once, orphaning its `sleep 0.2`, which is re-parented to PID 1 and
    // exits while the command still runs: only an init that reaps it keeps it from staying a zombie.
    const out = new Collector();
    const script = 'echo pid=$$ ppid=$PPID; (sleep 0.2 &); (sleep 0.2 &); sleep 0.8; ps -o pid,stat,comm';
    const r = await run({ args: ['sh', '-c', script], env: ['PATH=/bin'], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch(), init: true }, { stdout: out, stderr: 'inherit' });
    expect(r.exitCode).toBe(0);
    const [ids, , ...procs] = out.text.trim().split('\n');
    expect(ids).toMatch(/^pid=\d+ ppid=1$/);
    const table = procs.map((l) => l.trim().split(/\s+/));
    expect(table.map((cols) => cols[0])).toContain('1');
    expect(table.find((cols) => cols[0] === '1')?.[2]).toBe('init');
    expect(table.filter((cols) => cols[1].startsWith('Z'))).toEqual([]);
    expect(table.filter((cols) => cols[2] === 'sleep')).toEqual([]);
  });

  it('forwards SIGTERM sent to the container (its PID 1) to the command', async () => {
    const marker = `TSBUILD_INIT_SIGNAL=${process.pid}-${Date.now()}`;
    const out = new Collector();
    const p = run(
      { args: ['sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.05; done'], env: ['PATH=/bin', marker], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch(), init: true },
      { stdout: out, stderr: 'inherit' },
    );
    await waitFor('the command', () => out.text.includes('ready') && processesWithEnv(marker).length >= 1);
    const command = processesWithEnv(marker).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sh')) as number;
    const init = ppid(command);
    expect(readFileSync(`/proc/${init}/status`, 'utf8')).toMatch(/^NSpid:\t\d+\t1$/m);
    process.kill(init, 'SIGTERM');
    await expect(p).resolves.toMatchObject({ exitCode: 7 });
    expect(out.text).toContain('got TERM');
  });

  it("the init is the container's own process: the run's user, capabilities, seccomp filter and cgroup", async () => {
    const out = new Collector();
    const script = 'grep -E "^(Uid|CapEff|Seccomp):" /proc/1/status; cat /proc/1/cgroup | grep -c "::/$"; ls -l /dev/init | sed "s/.*-> //"';
    const r = await run(
      { args: ['sh', '-c', script], env: ['PATH=/bin'], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch(), init: true, user: { uid: 1000, gid: 1000 }, resources: { pidsLimit: 50 } },
      { stdout: out, stderr: 'inherit' },
    );
    expect(r.exitCode).toBe(0);
    // uid 1000 with no capabilities left (as the command), under a seccomp filter (mode 2), at the
    // root of its cgroup namespace (the run's cgroup), executed through the link to its descriptor.
    expect(out.text).toBe('Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\nSeccomp:\t2\n1\n/proc/self/fd/6\n');
  });

  it('a static init is required, as it starts inside the container: a dynamic one is named in the error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsbuild-init-'));
    try {
      copyFileSync('/usr/bin/tini', join(dir, 'tini'));
      chmodSync(join(dir, 'tini'), 0o755);
      expect(staticallyLinked('/usr/bin/tini-static')).toBe(true);
      expect(staticallyLinked('/usr/bin/tini')).toBe(false);
      expect(findInit('/usr/bin')).toBe('/usr/bin/tini-static');
      expect(() => findInit(dir, [])).toThrow(`run: init requested but ${join(dir, 'tini')} is linked dynamically, and an init starts inside the container: install a static one (apt-get install tini gives tini-static)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without init, the command is PID 1 and ignores a SIGTERM it has no handler for', async () => {
    const marker = `TSBUILD_NOINIT_SIGNAL=${process.pid}-${Date.now()}`;
    const ac = new AbortController();
    const p = run({ args: ['sleep', '1000'], env: ['PATH=/bin', marker], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: 'inherit' }, ac.signal);
    await waitFor('sleep', () => processesWithEnv(marker).length === 1);
    process.kill(processesWithEnv(marker)[0], 'SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    expect(processesWithEnv(marker)).toHaveLength(1);
    ac.abort();
    await expect(p).rejects.toThrow('cancelled');
  });
});
