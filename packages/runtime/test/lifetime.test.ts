import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { removeStaleCgroups, run, startRun } from '../src/index.js';
import { pidNamespaceTag } from '../src/cgroups/run-cgroup.js';
import { startChain } from '../src/helper-chain.js';
import { Collector, mountsMentioning, processesWithEnv, waitFor, useBusyboxFixture } from './busybox-rootfs.js';
import { tsbuildCgroups } from './cgroup-leftovers.js';
// @ts-expect-error plain .mjs fixture without types
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';

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
  // Its cgroups go too, without another run sweeping them: the reaper the dead process started
  // removes them once the pipe from it ends.
  await waitFor('its cgroups to be removed', () => tsbuildCgroups(parent.pid).length === 0, 5000);
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

  it('a run whose request fails after its helper started (an unknown capability) leaves no process, mount or cgroup', async () => {
    // run() starts the helper first and prepares the request while it boots; a failure there
    // abandons the helper, which exits on the end of its control socket before run() rejects.
    const { upper, mounts } = fx.overlay();
    const before = childrenOf(process.pid);
    await expect(
      run({ args: ['true'], env: ['PATH=/bin'], cwd: '/', rootfs: mounts, scratchDir: fx.scratch(), capabilities: { add: ['CAP_TELEPORT'] }, resources: { pidsLimit: 50 } }, {}),
    ).rejects.toThrow(/CAP_TELEPORT/);
    expect(childrenOf(process.pid).filter((p) => !before.includes(p) && !isReaper(p))).toEqual([]);
    expect(mountsMentioning(upper)).toEqual([]);
    expect(tsbuildCgroups()).toEqual([]);
  });

  it('a helper that cannot be moved into its cgroups is killed, and the run fails naming the file', async () => {
    // tsbuild moves the helper into the run's cgroups while it starts (joinCgroups): a write that
    // fails must not leave a helper waiting, nor send it the request.
    const { upper, mounts } = fx.overlay();
    const target = join(fx.scratch(), 'rootfs');
    mkdirSync(target, { recursive: true });
    const before = childrenOf(process.pid);
    const chain = startChain({ kind: 'run', target }, { network: 'host', stdio: ['ignore', 'ignore', 'inherit'] });
    const missing = join(fx.dir, 'no-such-cgroup', 'cgroup.procs');
    chain.joinCgroups([missing]);
    const request = { kind: 'run' as const, target, rootfs: mounts, args: ['true'], env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [], hostname: 'x', network: 'host' as const };
    await expect(chain.send(request)).rejects.toThrow(`cannot move the container into its cgroup (${missing}): ENOENT`);
    expect(childrenOf(process.pid).filter((p) => !before.includes(p))).toEqual([]);
    expect(mountsMentioning(upper)).toEqual([]);
  });

  it('a run started ahead (startRun) is taken by the run whose spec it was started for: one helper chain', async () => {
    const before = childrenOf(process.pid);
    const scratchDir = fx.scratch();
    const io = { stdout: new Collector(), stderr: 'inherit' as const };
    const started = startRun({ scratchDir, resources: { pidsLimit: 50 } }, io);
    const chains = (): number[] => childrenOf(process.pid).filter((p) => !before.includes(p) && !isReaper(p));
    const early = chains();
    expect(early).toHaveLength(1); // run-helper, entering the namespaces (or setpriv, then unshare)
    let during: number[] = [];
    const r = run({ args: ['sh', '-c', 'sleep 0.3; echo ran'], env: ['PATH=/bin'], cwd: '/', rootfs: fx.overlay().mounts, scratchDir, resources: { pidsLimit: 50 } }, io, undefined, started);
    await new Promise((resolve) => setTimeout(resolve, 150));
    during = chains();
    expect((await r).exitCode).toBe(0);
    expect(io.stdout.text).toBe('ran\n');
    expect(during).toEqual(early); // the same chain, no second one
    await started.release(); // taken: nothing left to do
    expect(chains()).toEqual([]);
    expect(existsSync(scratchDir)).toBe(false);
    expect(tsbuildCgroups()).toEqual([]);
  });

  it('a run started for other settings is let go: the run starts its own, and nothing of either is left', async () => {
    expect(readFileSync('/proc/net/dev', 'utf8').split('\n').length).toBeGreaterThan(4); // the host has more than lo
    const before = childrenOf(process.pid);
    const scratchDir = fx.scratch();
    const io = { stdout: new Collector(), stderr: 'inherit' as const };
    // Started for the host's network; the spec wants none, so the helper started is in the wrong namespaces.
    const started = startRun({ scratchDir, resources: { pidsLimit: 50 } }, io);
    const r = await run({ args: ['sh', '-c', 'tail -n +3 /proc/net/dev | cut -d: -f1'], env: ['PATH=/bin'], cwd: '/', rootfs: fx.overlay().mounts, scratchDir, network: 'none', resources: { pidsLimit: 50 } }, io, undefined, started);
    expect(r.exitCode).toBe(0);
    expect(io.stdout.text.trim()).toBe('lo');
    expect(childrenOf(process.pid).filter((p) => !before.includes(p) && !isReaper(p))).toEqual([]);
    expect(existsSync(scratchDir)).toBe(false);
    expect(tsbuildCgroups()).toEqual([]);
  });

  it('a started run whose scratch directory was emptied before run() (a prune between the two) still runs', async () => {
    const scratchDir = fx.scratch();
    const io = { stdout: new Collector(), stderr: 'inherit' as const };
    const started = startRun({ scratchDir }, io);
    await new Promise((resolve) => setTimeout(resolve, 150)); // the helper's node is running by now
    rmSync(scratchDir, { recursive: true, force: true });
    const r = await run({ args: ['sh', '-c', 'echo ran'], env: ['PATH=/bin'], cwd: '/', rootfs: fx.overlay().mounts, scratchDir }, io, undefined, started);
    expect(r.exitCode).toBe(0);
    expect(io.stdout.text).toBe('ran\n');
    expect(existsSync(scratchDir)).toBe(false);
  });

  it('a started run that no run() takes ends on release: no process, scratch directory or cgroup', async () => {
    const before = childrenOf(process.pid);
    const scratchDir = fx.scratch();
    const started = startRun({ scratchDir, resources: { pidsLimit: 50 } }, { stdout: 'inherit', stderr: 'inherit' });
    expect(existsSync(scratchDir)).toBe(true);
    await started.release();
    expect(childrenOf(process.pid).filter((p) => !before.includes(p) && !isReaper(p))).toEqual([]);
    expect(existsSync(scratchDir)).toBe(false);
    expect(tsbuildCgroups()).toEqual([]);
  });

  it('a started run whose signal aborts first: run() rejects as cancelled and nothing is left', async () => {
    const before = childrenOf(process.pid);
    const scratchDir = fx.scratch();
    const ac = new AbortController();
    const io = { stdout: 'inherit' as const, stderr: 'inherit' as const };
    const started = startRun({ scratchDir }, io, ac.signal);
    ac.abort(new Error('^C'));
    await expect(run({ args: ['true'], env: ['PATH=/bin'], cwd: '/', rootfs: fx.overlay().mounts, scratchDir }, io, ac.signal, started)).rejects.toThrow(/cancelled/);
    await started.release();
    expect(childrenOf(process.pid).filter((p) => !before.includes(p) && !isReaper(p))).toEqual([]);
    expect(existsSync(scratchDir)).toBe(false);
    expect(tsbuildCgroups()).toEqual([]);
  });

  it('kill -9 of the parent with limits and an init: no process, no mount, no cgroup', async () => {
    await killParentMidRun('setsid sleep 1000 & sleep 1000', undefined, { init: true, resources: { memory: 64 * 1024 * 1024, pidsLimit: 50 } });
  });

  it('kill -9 of the parent mid-run leaves no process and no mount', async () => {
    await killParentMidRun('sleep 1000 & sleep 1000', undefined);
  });

  it('also when the command runs as another user (setuid clears the parent-death signal)', async () => {
    await killParentMidRun('sleep 1000 & sleep 1000', { uid: 1000, gid: 1000 });
  });
});

/** Children of `pid` that are the cgroup reaper of run-cgroup.ts (`sh -c` of its script). */
function cgroupReapersOf(pid: number): number[] {
  return childrenOf(pid).filter(isReaper);
}

describe('kill -9 of a real `tsbuild run`', () => {
  const bin = fileURLToPath(new URL('../../cli/bin/tsbuild', import.meta.url));

  it.each([
    ['with limits', ['--memory', '64m', '--pids-limit', '50'], 1],
    ['without', [], 0],
  ])('leaves no process, no mount and no cgroup, with no later command to sweep them (%s)', async (_what, flags, minCgroups) => {
    const tmp = mkdtempSync(join(tmpdir(), 'tsbuild-kill9-'));
    let tsbuild: ReturnType<typeof spawn> | undefined;
    try {
      const env = { ...process.env, TSBUILD_ROOT: join(tmp, 'store') };
      makeBusyboxRootfs(join(tmp, 'rootfs'));
      execFileSync(bin, ['import', join(tmp, 'rootfs'), 'busybox'], { env, stdio: 'ignore' });
      const marker = `TSBUILD_CLI_KILL9=${process.pid}-${Date.now()}`;
      // bin/tsbuild exec's node: the pid is tsbuild's own.
      const child = spawn(bin, ['run', ...flags, '-e', marker, 'busybox', 'sh', '-c', 'setsid sleep 1000 & sleep 1000'], { env, stdio: 'ignore' });
      tsbuild = child;
      const pid = child.pid as number;
      const exited = new Promise((r) => child.on('exit', (code, sig) => r(sig ?? code)));
      await waitFor('the container processes', () => processesWithEnv(marker).length >= 2);
      // memory, pids and unified with limits; the accounting and device ones and unified without
      expect(tsbuildCgroups(pid).length).toBeGreaterThan(minCgroups as number);
      expect(readdirSync(join(tmp, 'store', 'tmp')).some((n) => n.startsWith(`run-${pid}-`))).toBe(true);
      expect(mountsMentioning(tmp).length).toBeGreaterThan(0);
      // Other test processes sweep dead pids' cgroups too (removeStaleCgroups before each run), so
      // that they vanish proves little alone: the reaper tsbuild started must do it, and end.
      const reapers = cgroupReapersOf(pid);
      expect(reapers).toHaveLength(1);

      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      await waitFor('every container process to die', () => processesWithEnv(marker).length === 0, 5000);
      await waitFor('every mount to go', () => mountsMentioning(tmp).length === 0, 5000);
      await waitFor('its cgroups to be removed', () => tsbuildCgroups(pid).length === 0, 5000);
      await waitFor('the reaper to end', () => !existsSync(`/proc/${reapers[0]}`), 5000);
    } finally {
      // A failed assertion before the kill must not leave it running (its container sleeps 1000 s).
      if (tsbuild?.exitCode === null && tsbuild.signalCode === null) tsbuild.kill('SIGKILL');
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a stale cgroup whose reaper died too is swept by the next run', async () => {
    const hierarchy = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
    const dir = `${hierarchy}/tsbuild/tsbuild-${2 ** 22 + 1}-${pidNamespaceTag()}deadbeef`;
    mkdirSync(dir, { recursive: true }); // pid 4194305: above PID_MAX_LIMIT (2^22), never alive
    const removed = await removeStaleCgroups();
    expect(removed).toContain(dir);
    expect(existsSync(dir)).toBe(false);
  });

  it("a cgroup of another PID namespace's tsbuild is never judged stale: its pid means nothing here", async () => {
    const hierarchy = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
    const other = ((parseInt(pidNamespaceTag(), 16) + 1) >>> 0).toString(16).padStart(8, '0');
    const dir = `${hierarchy}/tsbuild/tsbuild-${2 ** 22 + 1}-${other}deadbeef`;
    mkdirSync(dir, { recursive: true });
    try {
      expect(await removeStaleCgroups()).not.toContain(dir);
      expect(existsSync(dir)).toBe(true);
    } finally {
      rmdirSync(dir);
    }
  });
});

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The cgroup reaper (run-cgroup.ts), which lives as long as this process. */
function isReaper(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('while IFS= read -r d; do dirs=');
  } catch {
    return false;
  }
}
