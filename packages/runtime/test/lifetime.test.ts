import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { removeStaleCgroups, run } from '../src/index.js';
import { Collector, mountsMentioning, processesWithEnv, waitFor, useBusyboxFixture } from './busybox-rootfs.js';
import { tsbuildCgroups } from './cgroup-leftovers.js';

/**
 * kill -9 of tsbuild in the middle of a RUN: a separate Node process (standing in for tsbuild)
 * calls run(), and the test SIGKILLs it. Nothing of the container may survive it.
 */
const runtimeDist = fileURLToPath(new URL('../dist/index.js', import.meta.url));

const fx = useBusyboxFixture();

async function killParentMidRun(script: string, user: { uid: number; gid: number } | undefined, extra: Record<string, unknown> = {}): Promise<void> {
  const marker = `TSBUILD_KILL9_TEST=${process.pid}-${Date.now()}-${user?.uid ?? 0}`;
  const { upper, mounts } = fx.overlay();
  const parentScript = join(fx.dir, `parent-${Date.now()}.mjs`);
  writeFileSync(
    parentScript,
    `import { run } from ${JSON.stringify(runtimeDist)};
     await run(${JSON.stringify({ args: ['sh', '-c', script], env: ['PATH=/bin', marker], cwd: '/', rootfs: mounts, scratchDir: fx.scratch(), user, ...extra })},
               { stdout: 'inherit', stderr: 'inherit' });
     process.exit(42); // never reached: the test kills this process first`,
  );
  const parent = spawn(process.execPath, [parentScript], { stdio: 'ignore' });
  const exited = new Promise((r) => parent.on('exit', (code, sig) => r(sig ?? code)));
  await waitFor('the container processes', () => processesWithEnv(marker).length >= 2);
  expect(mountsMentioning(upper).length).toBeGreaterThan(0);

  parent.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  await waitFor('every container process to die', () => processesWithEnv(marker).length === 0, 5000);
  await waitFor('every mount to go', () => mountsMentioning(upper).length === 0, 5000);
  // Its cgroups stay behind, empty, named after the dead pid: the next run (or this) removes them.
  expect(tsbuildCgroups(parent.pid).length).toBeGreaterThan(0);
  const removed = await removeStaleCgroups();
  expect(removed.filter((d) => d.includes(`/tsbuild-${parent.pid}-`)).length).toBeGreaterThan(0);
  expect(tsbuildCgroups(parent.pid)).toEqual([]);
}

describe('lifetime', () => {
  it('a child that daemonises (setsid, nohup, double fork) does not outlive run()', async () => {
    const marker = `TSBUILD_DAEMON_TEST=${process.pid}-${Date.now()}`;
    const out = new Collector();
    const r = await run(
      {
        args: ['sh', '-c', 'setsid sleep 1000 & nohup sleep 1000 >/dev/null 2>&1 & (sleep 1000 &) ; sleep 0.2; ps -o comm | grep -c sleep'],
        env: ['PATH=/bin', marker],
        cwd: '/',
        rootfs: fx.overlay().mounts,
        scratchDir: fx.scratch(),
        resources: { pidsLimit: 50 },
      },
      { stdout: out, stderr: 'inherit' },
    );
    expect(r.exitCode).toBe(0);
    expect(Number(out.text.trim())).toBeGreaterThanOrEqual(2); // the daemons were running
    // run() resolved only once the PID namespace and the cgroup were empty.
    expect(processesWithEnv(marker)).toEqual([]);
    expect(tsbuildCgroups()).toEqual([]);
  });

  it('kill -9 of the parent with limits and an init: no process, no mount, and stale cgroups are swept', async () => {
    await killParentMidRun('setsid sleep 1000 & sleep 1000', undefined, { init: true, resources: { memory: 64 * 1024 * 1024, pidsLimit: 50 } });
  });

  it('kill -9 of the parent mid-run leaves no process and no mount', async () => {
    await killParentMidRun('sleep 1000 & sleep 1000', undefined);
  });

  it('also when the command runs as another user (setuid clears the parent-death signal)', async () => {
    await killParentMidRun('sleep 1000 & sleep 1000', { uid: 1000, gid: 1000 });
  });
});
