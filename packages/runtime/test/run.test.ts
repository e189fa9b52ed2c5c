import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CancelledError, FailedPreconditionError, InvalidArgumentError } from '@tsbuild/oci';
import { run, type RunSpec } from '../src/index.js';
import { Collector, mountsMentioning, processesWithEnv, waitFor, useBusyboxFixture, shIn } from './busybox-rootfs.js';

const fx = useBusyboxFixture();

const sh = (script: string, extra: Partial<RunSpec> = {}, stdin?: Readable) => shIn(fx, script, { env: ['PATH=/usr/bin:/bin', 'HOME=/root'], ...extra }, stdin !== undefined ? { stdin } : {});

function noMountsLeft(scratchDir: string): void {
  expect(mountsMentioning(scratchDir)).toEqual([]);
  expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(scratchDir);
  const findmnt = execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' });
  expect(findmnt).not.toContain(scratchDir);
}

describe('run', () => {
  it('runs the command as PID 1 of its own PID namespace, seeing only its own processes', async () => {
    const r = await sh('echo $$; ps -o pid,comm');
    expect(r.exitCode).toBe(0);
    const [pid, , ...procs] = r.out.trim().split('\n');
    expect(pid).toBe('1');
    // sh (PID 1) and ps, nothing of the host's
    expect(procs.map((l) => l.trim().split(/\s+/)[1])).toEqual(['ps']);
    expect(readFileSync('/proc/self/stat', 'utf8').startsWith('1 ')).toBe(false);
  });

  it('has the rootfs as / and its own /proc, /dev and a read-only /sys', async () => {
    const r = await sh('cat /marker; readlink /proc/self | grep -qx "[0-9]*" && echo proc-ok; echo -n x > /dev/null && head -c 4 /dev/zero | wc -c; ls /dev/pts >/dev/null && test -L /dev/ptmx && echo pts-ok; touch /sys/x 2>/dev/null || echo sys-ro; touch /dev/shm/x && echo shm-ok; grep -q \" /dev/mqueue mqueue \" /proc/mounts && echo mqueue-ok; ls /dev | tr \"\\n\" \" \"');
    expect(r.err).toBe('');
    expect(r.out.split('\n')).toEqual(['this is the rootfs', 'proc-ok', '4', 'pts-ok', 'sys-ro', 'shm-ok', 'mqueue-ok', 'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ']);
  });

  it('sets the hostname, in its own UTS namespace', async () => {
    const r = await sh('hostname', { hostname: 'buildbox' });
    expect(r.out).toBe('buildbox\n');
    const d = await sh('hostname');
    expect(d.out.trim()).toMatch(/^[0-9a-f]{12}$/);
    expect(execFileSync('hostname', { encoding: 'utf8' }).trim()).not.toBe('buildbox');
  });

  it('writes land in the upperdir and never in the lower layer', async () => {
    const r = await sh('echo hello > /newfile; rm /marker');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(r.upper, 'newfile'), 'utf8')).toBe('hello\n');
    expect(readFileSync(join(fx.lower, 'marker'), 'utf8')).toBe('this is the rootfs\n');
    expect(existsSync(join(fx.lower, 'newfile'))).toBe(false);
  });

  it('passes env and cwd, creating a missing cwd 0755 root', async () => {
    const r = await sh('echo "$GREETING"; pwd; stat -c "%a %u %g" .', { env: ['PATH=/bin', 'GREETING=hi there'], cwd: '/work/dir' });
    expect(r.out).toBe('hi there\n/work/dir\n755 0 0\n');
  });

  it('propagates the exit code and separates stdout from stderr', async () => {
    const r = await sh('echo out; echo err >&2; exit 3');
    expect(r).toMatchObject({ exitCode: 3, out: 'out\n', err: 'err\n' });
    expect(r.signal).toBeUndefined();
  });

  it('reports a command killed by a signal as 128+n with the signal name', async () => {
    // Inside its namespace PID 1 cannot be killed even by SIGKILL; from the host it can.
    const marker = `TSBUILD_SIGNAL_TEST=${process.pid}-${Date.now()}`;
    const p = run({ args: ['sleep', '1000'], env: ['PATH=/bin', marker], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: 'inherit' });
    await waitFor('sleep', () => processesWithEnv(marker).length === 1);
    process.kill(processesWithEnv(marker)[0], 'SIGKILL');
    await expect(p).resolves.toEqual({ exitCode: 137, signal: 'SIGKILL', oomKilled: false, usage: expect.objectContaining({ cpuMs: expect.any(Number) }) });
  });

  it('pipes stdin', async () => {
    const r = await sh('tr a-z A-Z', {}, Readable.from([Buffer.from('hello\n'), Buffer.from('world\n')]));
    expect(r.out).toBe('HELLO\nWORLD\n');
  });

  it('lets no descriptor beyond 0, 1 and 2 reach the command', async () => {
    // Looked at from the host: any listing from inside would show the lister's own directory fd.
    const marker = `TSBUILD_FD_TEST=${process.pid}-${Date.now()}`;
    const ac = new AbortController();
    const p = run({ args: ['sleep', '1000'], env: ['PATH=/bin', marker], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch() }, { stdout: new Collector(), stderr: 'inherit', stdin: Readable.from([]) }, ac.signal);
    await waitFor('sleep', () => processesWithEnv(marker).length === 1);
    const pid = processesWithEnv(marker)[0];
    expect(readdirSync(`/proc/${pid}/fd`).sort()).toEqual(['0', '1', '2']);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\t${pid}\\t1$`, 'm'));
    ac.abort();
    await expect(p).rejects.toThrow(CancelledError);
  });

  it('answers 127 for a command not found and 126 for one not executable, naming it', async () => {
    const { mounts } = fx.overlay();
    const out = new Collector();
    const err = new Collector();
    const nf = await run({ args: ['no-such-command'], env: ['PATH=/bin'], cwd: '/', rootfs: mounts, scratchDir: fx.scratch() }, { stdout: out, stderr: err });
    expect(nf.exitCode).toBe(127);
    expect(err.text).toContain('no-such-command');
    expect(out.text).toBe('');

    const abs = new Collector();
    const r2 = await run({ args: ['/nowhere/cmd'], env: [], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: abs });
    expect(r2.exitCode).toBe(127);
    expect(abs.text).toContain('/nowhere/cmd');

    const { upper, mounts: m2 } = fx.overlay();
    writeFileSync(join(upper, 'script'), 'echo hi\n');
    chmodSync(join(upper, 'script'), 0o644);
    const e3 = new Collector();
    const ne = await run({ args: ['/script'], env: [], cwd: '/', rootfs: m2, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: e3 });
    expect(ne.exitCode).toBe(126);
    expect(e3.text).toContain('/script');
  });

  it('runs as the given user and groups', async () => {
    const r = await sh('id -u; id -g; id -G; touch /tmp/f && stat -c "%u:%g" /tmp/f; echo x > /root/forbidden 2>/dev/null || echo denied', {
      user: { uid: 1000, gid: 1000, additionalGids: [27] },
    });
    expect(r.out).toBe('1000\n1000\n1000 27\n1000:1000\ndenied\n');
  });

  it("with network 'none' has only lo, and it is up", async () => {
    const r = await sh('ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags', { network: 'none' });
    const [names, , flags] = r.out.trim().split('\n');
    expect(names).toBe('lo');
    expect(Number(flags) & 1).toBe(1); // IFF_UP
    const host = await sh('ls /sys/class/net | wc -l');
    expect(Number(host.out.trim())).toBeGreaterThan(1);
  });

  it('leaves no mount and removes scratchDir after a run, a failed run and a setup error', async () => {
    const ok = await sh('mount | grep -c " on / type overlay"');
    expect(ok.out).toBe('1\n');
    noMountsLeft(ok.scratchDir);
    expect(existsSync(ok.scratchDir)).toBe(false);

    const failed = await sh('exit 9');
    expect(failed.exitCode).toBe(9);
    noMountsLeft(failed.scratchDir);
    expect(existsSync(failed.scratchDir)).toBe(false);

    // cwd exists as a file: the helper fails before execve and reports it
    const { upper, mounts } = fx.overlay();
    writeFileSync(join(upper, 'afile'), '');
    const scratchDir = fx.scratch();
    await expect(run({ args: ['true'], env: [], cwd: '/afile/sub', rootfs: mounts, scratchDir }, { stdout: 'inherit', stderr: 'inherit' })).rejects.toThrow(
      FailedPreconditionError,
    );
    noMountsLeft(scratchDir);
    expect(existsSync(scratchDir)).toBe(false);

    // a rootfs that cannot be mounted
    const bad = fx.scratch();
    const p = run(
      { args: ['true'], env: [], cwd: '/', rootfs: [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${fx.dir}/missing`, `upperdir=${upper}`, `workdir=${fx.dir}/w`] }], scratchDir: bad },
      { stdout: 'inherit', stderr: 'inherit' },
    );
    await expect(p).rejects.toThrow(/mount .*rootfs/);
    noMountsLeft(bad);
    expect(existsSync(bad)).toBe(false);
  });

  it('mounts an overlay whose layer list exceeds the page mount(2) copies', async () => {
    const lowers: string[] = [];
    for (let i = 0; i < 120; i++) {
      const l = join(fx.dir, 'l', String(i).padStart(3, '0'), 'fs');
      mkdirSync(l, { recursive: true });
      if (i === 7) writeFileSync(join(l, 'from-layer-7'), 'seven\n');
      lowers.push(l);
    }
    const upper = join(fx.dir, 'l', 'upper');
    const work = join(fx.dir, 'l', 'work');
    mkdirSync(upper);
    mkdirSync(work);
    const options = ['index=off', `lowerdir=${[...lowers.reverse(), fx.lower].join(':')}`, `upperdir=${upper}`, `workdir=${work}`];
    expect(options.join(',').length).toBeGreaterThan(4096);
    const out = new Collector();
    const r = await run({ args: ['cat', '/from-layer-7', '/marker'], env: ['PATH=/bin'], cwd: '/', rootfs: [{ type: 'overlay', source: 'overlay', options }], scratchDir: fx.scratch() }, { stdout: out, stderr: 'inherit' });
    expect(r.exitCode).toBe(0);
    expect(out.text).toBe('seven\nthis is the rootfs\n');
  });

  it('runs on a read-only bind of a directory as rootfs', async () => {
    const out = new Collector();
    const err = new Collector();
    const r = await run(
      { args: ['sh', '-c', 'cat /marker; touch /x || echo read-only'], env: ['PATH=/bin'], cwd: '/', rootfs: [{ type: 'bind', source: fx.lower, options: ['rbind', 'ro'] }], scratchDir: fx.scratch() },
      { stdout: out, stderr: err },
    );
    expect(r.exitCode).toBe(0);
    expect(out.text).toBe('this is the rootfs\nread-only\n');
    expect(err.text).toContain('Read-only file system');
    expect(existsSync(join(fx.lower, 'x'))).toBe(false);
  });

  it('rejects a malformed spec before starting anything', async () => {
    await expect(run({ args: [], env: [], cwd: '/', rootfs: fx.overlay().mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: 'inherit' })).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(run({ args: ['true'], env: [], cwd: 'rel', rootfs: fx.overlay().mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: 'inherit' })).rejects.toThrow(
      InvalidArgumentError,
    );
  });

  it('an AbortSignal kills the whole container and rejects with CancelledError', async () => {
    const marker = `TSBUILD_ABORT_TEST=${process.pid}-${Date.now()}`;
    const { upper, mounts } = fx.overlay();
    const scratchDir = fx.scratch();
    const ac = new AbortController();
    const out = new Collector();
    const p = run({ args: ['sh', '-c', 'sleep 1000 & sleep 1000; wait'], env: ['PATH=/bin', marker], cwd: '/', rootfs: mounts, scratchDir }, { stdout: out, stderr: 'inherit' }, ac.signal);
    await waitFor('both sleeps', () => processesWithEnv(marker).length >= 3);
    // The overlay exists, in the container's mount namespace only.
    expect(mountsMentioning(upper).length).toBeGreaterThan(0);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(upper);
    ac.abort();
    await expect(p).rejects.toThrow(CancelledError);
    // run() waited for the container to be gone: nothing is left at the moment it rejects
    expect(processesWithEnv(marker)).toEqual([]);
    expect(mountsMentioning(upper)).toEqual([]);
    noMountsLeft(scratchDir);
    expect(existsSync(scratchDir)).toBe(false);

    const already = AbortSignal.abort();
    await expect(run({ args: ['true'], env: [], cwd: '/', rootfs: mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: 'inherit' }, already)).rejects.toThrow(CancelledError);
  });

  it('costs little: run(["true"])', async () => {
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const { mounts } = fx.overlay();
      const t0 = performance.now();
      const r = await run({ args: ['true'], env: ['PATH=/bin'], cwd: '/', rootfs: mounts, scratchDir: fx.scratch() }, { stdout: 'inherit', stderr: 'inherit' });
      times.push(performance.now() - t0);
      expect(r.exitCode).toBe(0);
    }
    times.sort((a, b) => a - b);
    const median = times[5];
    console.info(`run(['true']): median ${median.toFixed(1)} ms, min ${times[0].toFixed(1)} ms, max ${times[9].toFixed(1)} ms`);
    expect(median).toBeLessThan(500);
  });

  it('leaves no temp directory behind for the scratch dirs it used', () => {
    expect(readdirSync(fx.dir).filter((n) => n.startsWith('scratch'))).toEqual([]);
  });
});
