import { chmodSync, chownSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@tsbuild/oci';
import { parseSecurityOpts, type RunSpec } from '../src/index.js';
import { useBusyboxFixture, shIn } from './busybox-rootfs.js';

/** Every fact here is read from inside the container, from /proc/self/status and friends. */
const fx = useBusyboxFixture();

const sh = (script: string, extra: Partial<RunSpec> = {}, overlay = fx.overlay()) => shIn(fx, script, { hostname: 'secbox', ...extra }, { overlay });

function status(text: string): Record<string, string> {
  return Object.fromEntries(text.split('\n').filter((l) => l.includes(':\t')).map((l) => l.split(':\t') as [string, string]));
}

const STATUS = 'cat /proc/self/status';

describe('capabilities', () => {
  it("are docker's default set for root: CapEff = CapPrm = CapBnd = 00000000a80425fb", async () => {
    const s = status((await sh(STATUS)).out);
    expect(s).toMatchObject({ CapEff: '00000000a80425fb', CapPrm: '00000000a80425fb', CapBnd: '00000000a80425fb', CapInh: '0000000000000000', CapAmb: '0000000000000000' });
  });

  it('--cap-drop CHOWN clears bit 0 and chown fails', async () => {
    const r = await sh(`${STATUS}; touch /tmp/f; chown 1000 /tmp/f || echo chown-denied`, { capabilities: { drop: ['CHOWN'] } });
    expect(status(r.out).CapEff).toBe('00000000a80425fa');
    expect(r.out).toContain('chown-denied');
    expect(r.err).toContain('Operation not permitted');
  });

  it('--cap-add SYS_ADMIN adds bit 21', async () => {
    const s = status((await sh(STATUS, { capabilities: { add: ['CAP_SYS_ADMIN'] } })).out);
    expect(s.CapEff).toBe('00000000a82425fb');
    expect(s.CapBnd).toBe('00000000a82425fb');
  });

  it('a non-root user ends with no effective or permitted capabilities, the bounding set kept', async () => {
    const s = status((await sh(STATUS, { user: { uid: 1000, gid: 1000 } })).out);
    expect(s).toMatchObject({ Uid: '1000\t1000\t1000\t1000', CapEff: '0000000000000000', CapPrm: '0000000000000000', CapBnd: '00000000a80425fb' });
  });

  it('rejects an unknown capability before starting anything', async () => {
    await expect(sh('true', { capabilities: { add: ['CAP_TELEPORT'] } })).rejects.toThrow(InvalidArgumentError);
  });
});

describe('seccomp', () => {
  it('filters every run by default (Seccomp: 2), without no_new_privs unless asked', async () => {
    const s = status((await sh(STATUS)).out);
    expect(s.Seccomp).toBe('2');
    expect(s.NoNewPrivs).toBe('0');
    const nnp = status((await sh(STATUS, parseSecurityOpts(['no-new-privileges']))).out);
    expect(nnp.NoNewPrivs).toBe('1');
    expect(nnp.Seccomp).toBe('2');
  });

  it('denies namespaces and mounts with EPERM, as docker does', async () => {
    const r = await sh('unshare -m true; echo "unshare $?"; nsenter -t 1 -u true; echo "nsenter $?"; mount -t tmpfs x /tmp; echo "mount $?"; pivot_root / /tmp; echo "pivot_root $?"');
    expect(r.out).toMatch(/unshare [1-9]/);
    expect(r.out).toMatch(/nsenter [1-9]/);
    expect(r.out).toMatch(/mount [1-9]/);
    expect(r.out).toMatch(/pivot_root [1-9]/);
    expect(r.err).toMatch(/unshare.*Operation not permitted/);
    expect(r.err).toMatch(/setns.*Operation not permitted|nsenter.*Operation not permitted/);
  });

  it('lets the syscalls CAP_SYS_ADMIN guards through with that capability, and unconfined only with it', async () => {
    const mountTmp = 'mount -t tmpfs x /tmp && grep -c " /tmp tmpfs" /proc/mounts';
    expect((await sh(mountTmp, { capabilities: { add: ['SYS_ADMIN'] } })).out).toBe('1\n');
    const unconfined = await sh(`${STATUS}; ${mountTmp}`, { seccomp: 'unconfined' });
    expect(status(unconfined.out).Seccomp).toBe('0');
    expect(unconfined.exitCode).not.toBe(0); // no CAP_SYS_ADMIN: the kernel says no
    const both = await sh(mountTmp, parseSecurityOpts(['seccomp=unconfined']).seccomp === 'unconfined' ? { seccomp: 'unconfined', capabilities: { add: ['SYS_ADMIN'] } } : {});
    expect(both.out).toBe('1\n');
  });

  it('loads a docker JSON profile: one that blocks mkdir makes mkdir fail with EPERM', async () => {
    const file = join(fx.dir, 'no-mkdir.json');
    writeFileSync(file, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] }));
    const r = await sh('mkdir /x; echo "mkdir $?"; touch /y && echo touched', parseSecurityOpts([`seccomp=${file}`]));
    expect(r.out).toBe('mkdir 1\ntouched\n');
    expect(r.err).toMatch(/mkdir.*Operation not permitted/);
    expect(() => parseSecurityOpts([`seccomp=${join(fx.dir, 'missing.json')}`])).toThrow(/cannot read .*missing\.json/);
    expect(() => parseSecurityOpts(['mcs=foo'])).toThrow(InvalidArgumentError);
  });
});

describe('masked and read-only paths', () => {
  it('makes /proc/sys read-only and masks /proc/keys, /proc/timer_list and /sys/firmware', async () => {
    const r = await sh('echo x > /proc/sys/kernel/hostname; echo "w $?"; wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sysrq-trigger; echo "t $?"');
    expect(r.out).toBe('w 1\n0\n0\n0\nt 1\n');
    expect(r.err).toContain('Read-only file system');
    expect(readdirSync('/sys/firmware').length).toBeGreaterThan(0); // only the container's view is masked
  });

  it('takes other lists from the spec', async () => {
    const r = await sh('wc -c < /proc/keys; echo x > /proc/sys/kernel/hostname && cat /proc/sys/kernel/hostname', { maskedPaths: ['/proc/version'], readonlyPaths: [] });
    expect(Number(r.out.split('\n')[0])).toBeGreaterThanOrEqual(0);
    expect(r.out.split('\n')[1]).toBe('x');
    expect((await sh('wc -c < /proc/version', { maskedPaths: ['/proc/version'] })).out).toBe('0\n');
  });
});

describe('/etc/hosts, /etc/resolv.conf, /etc/hostname', () => {
  it('are provided for the run and never reach the upperdir, even when the command writes them', async () => {
    const r = await sh('cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf; echo "1.2.3.4 evil" >> /etc/hosts; echo x > /etc/hostname; echo kept > /etc/other');
    const [hosts, hostname, resolv] = r.out.split('---\n');
    expect(hosts).toMatch(/^127\.0\.0\.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\S+\tsecbox\n$/);
    expect(hostname).toBe('secbox\n');
    expect(resolv).toBe(readFileSync('/etc/resolv.conf', 'utf8'));
    expect(readdirSync(join(r.upper, 'etc')).sort()).toEqual(['other']);
  });

  it("cover the image's own files without changing them, and take contents from the spec", async () => {
    const o = fx.overlay();
    writeFileSync(join(fx.lower, 'etc/hosts'), 'image hosts\n');
    try {
      const r = await sh('cat /etc/hosts /etc/resolv.conf; echo changed > /etc/hosts', { etcFiles: { hosts: 'given hosts\n', resolvConf: 'nameserver 192.0.2.53\n' } }, o);
      expect(r.out).toBe('given hosts\nnameserver 192.0.2.53\n');
      expect(existsSync(join(o.upper, 'etc'))).toBe(false);
      expect(readFileSync(join(fx.lower, 'etc/hosts'), 'utf8')).toBe('image hosts\n');
    } finally {
      writeFileSync(join(fx.lower, 'etc/hosts'), '');
    }
  });

  it('drop loopback nameservers when the run has its own network', async () => {
    const r = await sh('cat /etc/resolv.conf', { network: 'none', etcFiles: undefined });
    expect(r.out).not.toMatch(/nameserver\s+127\./);
  });
});

describe('namespaces', () => {
  it('gives the run its own cgroup namespace: /proc/self/cgroup shows "/"', async () => {
    const lines = (await sh('cat /proc/self/cgroup')).out.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/:\/$/);
  });

  it('maps root inside a user namespace to an unprivileged host uid: its files belong to 100000', async () => {
    chmodSync(fx.dir, 0o755); // the mapped root must reach the layers
    const o = fx.overlay();
    const work = join(o.upper, '..', 'work');
    for (const d of [o.upper, work]) chownSync(d, 100000, 100000);
    const userns = { uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }], gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }] };
    const r = await sh(`id -u; cat /proc/self/uid_map; echo hi > /created; cat /etc/hostname; ${STATUS} | grep CapEff`, { userns }, o);
    expect(r.err).toBe('');
    const [uid, map, hostname, capEff] = r.out.split('\n');
    expect(uid).toBe('0');
    expect(map.trim().split(/\s+/)).toEqual(['0', '100000', '65536']);
    expect(hostname).toBe('secbox');
    expect(capEff).toBe('CapEff:\t00000000a80425fb');
    const st = statSync(join(o.upper, 'created'));
    expect([st.uid, st.gid]).toEqual([100000, 100000]);
    expect(readFileSync(join(o.upper, 'created'), 'utf8')).toBe('hi\n');
  });

  it('rejects a user namespace mapping that leaves root unmapped', async () => {
    await expect(sh('true', { userns: { uidMappings: [{ containerID: 1, hostID: 100000, size: 10 }], gidMappings: [{ containerID: 0, hostID: 100000, size: 10 }] } })).rejects.toThrow(/container id 0/);
  });
});
