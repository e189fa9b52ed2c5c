import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError } from '@tsbuild/oci';
import { run, type RunSpec } from '../src/index.js';
import { Collector, mountsMentioning, processesWithEnv, waitFor, useBusyboxFixture, shIn } from './busybox-rootfs.js';

const RUNC = '/usr/sbin/runc';
const fx = useBusyboxFixture({ noLeftoverCgroups: true });

const sh = (script: string, extra: Partial<RunSpec> = {}) => shIn(fx, script, { runtime: RUNC, ...extra });

describe('external runtime (runc)', () => {
  it('runs the command as PID 1 with the hostname, propagates the exit code, and writes land in the upperdir', async () => {
    const r = await sh('echo $$; hostname; cat /marker; ps -o pid,comm | wc -l; echo layer > /written; cat /etc/hostname; exit 5', { hostname: 'runcbox' });
    expect(r.err).toBe('');
    // ps lists a header, sh, ps and wc: nothing of the host's
    expect(r.out).toBe('1\nruncbox\nthis is the rootfs\n4\nruncbox\n');
    expect(r.exitCode).toBe(5);
    expect(r.oomKilled).toBe(false);
    expect(readFileSync(join(r.upper, 'written'), 'utf8')).toBe('layer\n');
    // the /etc files were bound for the run only, their mountpoints not left in the layer
    expect(readdirSync(join(r.upper))).not.toContain('etc');
    expect(existsSync(join(fx.lower, 'written'))).toBe(false);
    expect(mountsMentioning(r.upper)).toEqual([]);
    expect(existsSync(r.scratchDir)).toBe(false);
  });

  it("applies runc's security defaults: capabilities, masked and read-only paths", async () => {
    const r = await sh('grep CapEff /proc/self/status; cat /proc/kcore | wc -c; touch /proc/sys/x 2>/dev/null || echo sys-ro; ls /dev');
    expect(r.out).toContain('CapEff:\t00000000a80425fb');
    expect(r.out).toContain('\n0\n');
    expect(r.out).toContain('sys-ro');
    expect(r.out).toMatch(/null/);
  });

  it('hands the run\'s seccomp profile, capability changes and no-new-privileges to runc', async () => {
    const r = await sh('grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; mkdir /blocked 2>&1 || true', {
      capabilities: { drop: ['CHOWN'] },
      noNewPrivileges: true,
      seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] },
    });
    expect(r.out).toMatch(/^CapEff:\t00000000a80425fa\nNoNewPrivs:\t1\nSeccomp:\t2\n/);
    expect(r.out).toMatch(/Operation not permitted/);
    const d = await sh('grep -E "^Seccomp:" /proc/self/status; busybox unshare -m true 2>&1 || echo denied');
    expect(d.out).toMatch(/^Seccomp:\t2\n/);
    expect(d.out).toContain('denied');
  });

  it('pipes stdin and separates stdout from stderr', async () => {
    const { mounts } = fx.overlay();
    const out = new Collector();
    const err = new Collector();
    const { Readable } = await import('node:stream');
    const r = await run(
      { args: ['sh', '-c', 'tr a-z A-Z; echo oops >&2'], env: ['PATH=/bin'], cwd: '/', rootfs: mounts, scratchDir: fx.scratch(), runtime: 'runc' },
      { stdout: out, stderr: err, stdin: Readable.from([Buffer.from('hello\n')]) },
    );
    expect(r.exitCode).toBe(0);
    expect(out.text).toBe('HELLO\n');
    expect(err.text).toBe('oops\n');
  });

  it('enforces the memory limit and reports the OOM kill', async () => {
    const r = await sh('dd bs=200M count=1 if=/dev/zero of=/dev/null', { resources: { memory: 64 * 1024 * 1024 } });
    expect(r.oomKilled).toBe(true);
    expect(r.exitCode).not.toBe(0);
  });

  it("network 'none' has only lo", async () => {
    const r = await sh('ls /sys/class/net', { network: 'none' });
    expect(r.out).toBe('lo\n');
  });

  it('an abort kills the container and leaves nothing', async () => {
    const marker = `TSBUILD_RUNC_ABORT=${process.pid}-${Date.now()}`;
    const { upper, mounts } = fx.overlay();
    const ac = new AbortController();
    const p = run({ args: ['sh', '-c', 'sleep 1000 & sleep 1000'], env: ['PATH=/bin', marker], cwd: '/', rootfs: mounts, scratchDir: fx.scratch(), runtime: RUNC }, { stdout: 'inherit', stderr: 'inherit' }, ac.signal);
    await waitFor('the container', () => processesWithEnv(marker).length >= 2);
    ac.abort();
    await expect(p).rejects.toThrow(CancelledError);
    expect(processesWithEnv(marker)).toEqual([]);
    expect(mountsMentioning(upper)).toEqual([]);
  });

  it('names a missing runtime', async () => {
    await expect(sh('true', { runtime: '/no/such/runc' })).rejects.toThrow('OCI runtime not found or not executable: /no/such/runc');
  });
});
