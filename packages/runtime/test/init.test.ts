import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { run } from '../src/index.js';
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
    expect(ids).toBe('pid=2 ppid=1');
    const table = procs.map((l) => l.trim().split(/\s+/));
    expect(table.map((cols) => cols[0])).toContain('1');
    expect(table.find((cols) => cols[0] === '1')?.[2]).toMatch(/^tini/);
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
