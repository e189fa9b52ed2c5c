import { readFileSync, statSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, NotFoundError } from '@tsbuild/oci';
import { major, minor } from '@tsbuild/linux';
import { type RunSpec, parseSecurityOpts } from '../src/index.js';
import { useBusyboxFixture, shIn, mountsMentioning } from './busybox-rootfs.js';

/** Every fact here is read from inside the container: ulimit, /proc/self/*, stat, df, /proc/mounts. */
const fx = useBusyboxFixture({ noLeftoverCgroups: true });
const sh = (script: string, extra: Partial<RunSpec> = {}) => shIn(fx, script, extra);

/** /proc/self/limits as { 'Max open files': [soft, hard] }. */
function limits(text: string): Record<string, [string, string]> {
  const out: Record<string, [string, string]> = {};
  for (const line of text.split('\n').slice(1)) {
    const m = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    if (m) out[m[1]!] = [m[2]!, m[3]!];
  }
  return out;
}

describe('ulimits', () => {
  it("default to buildah 1.28's nofile 1024:1024 and nproc 32768:32768", async () => {
    const r = await sh('ulimit -n; ulimit -Hn; cat /proc/self/limits');
    expect(r.out.split('\n').slice(0, 2)).toEqual(['1024', '1024']);
    const l = limits(r.out);
    expect(l['Max open files']).toEqual(['1024', '1024']);
    expect(l['Max processes']).toEqual(['32768', '32768']);
  });

  it('--ulimit nofile=512:2048, core=-1, nproc and msgqueue replace the defaults', async () => {
    const r = await sh('ulimit -n; ulimit -Hn; cat /proc/self/limits', {
      ulimits: [
        { name: 'nofile', soft: 512, hard: 2048 },
        { name: 'core', soft: -1, hard: -1 },
        { name: 'nproc', soft: 100, hard: 200 },
        { name: 'msgqueue', soft: 4096, hard: 8192 },
      ],
    });
    expect(r.exitCode).toBe(0);
    expect(r.out.split('\n').slice(0, 2)).toEqual(['512', '2048']);
    const l = limits(r.out);
    expect(l['Max core file size']).toEqual(['unlimited', 'unlimited']);
    expect(l['Max processes']).toEqual(['100', '200']);
    expect(l['Max msgqueue size']).toEqual(['4096', '8192']);
  });

  it('a limit the kernel refuses fails the run in one line before the command starts', async () => {
    // RLIMIT_NOFILE may not exceed fs.nr_open (EPERM, setrlimit(2)).
    await expect(sh('echo ran', { ulimits: [{ name: 'nofile', soft: -1, hard: -1 }] })).rejects.toThrow(/^cannot set ulimit nofile=-1:-1: prlimit: EPERM$/);
  });

  it('rejects unknown names and soft above hard before starting anything', async () => {
    await expect(sh('true', { ulimits: [{ name: 'nofiles' as 'nofile', soft: 1, hard: 1 }] })).rejects.toThrow(/unknown limit nofiles/);
    await expect(sh('true', { ulimits: [{ name: 'nofile', soft: 10, hard: 5 }] })).rejects.toThrow(/soft limit 10 is above hard limit 5/);
  });
});

/** Raising a hard rlimit or lowering oom_score_adj needs CAP_SYS_RESOURCE (bit 24), which some sandboxes withhold even from root. */
const sysResource = (BigInt(`0x${/^CapEff:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`) >> 24n) & 1n ? true : false;

describe('with or without CAP_SYS_RESOURCE', () => {
  it('a hard limit above tsbuild\'s own is set with the capability, one line without it', async () => {
    const hard = Number(readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+\S+\s+(\d+)/m)![1]);
    const nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8'));
    const want = Math.min(hard + 1, nrOpen);
    const run = sh('ulimit -Hn', { ulimits: [{ name: 'nofile', soft: 1024, hard: want }] });
    if (sysResource || want === hard) expect((await run).out).toBe(`${want}\n`);
    else await expect(run).rejects.toThrow(new RegExp(`^cannot set ulimit nofile=1024:${want}: prlimit: EPERM$`));
  });

  it('oom_score_adj below tsbuild\'s own is set with the capability, one line without it', async () => {
    const run = sh('cat /proc/self/oom_score_adj', { oomScoreAdj: -800 });
    if (sysResource) expect((await run).out).toBe('-800\n');
    else await expect(run).rejects.toThrow(/^cannot set oom_score_adj -800: EACCES$/);
  });
});

describe('oom_score_adj', () => {
  it('is written before execve and inherited by what the command starts', async () => {
    expect((await sh('cat /proc/self/oom_score_adj; sh -c "cat /proc/self/oom_score_adj"', { oomScoreAdj: 500 })).out).toBe('500\n500\n');
    expect((await sh('cat /proc/self/oom_score_adj', { oomScoreAdj: 1000 })).out).toBe('1000\n');
  });

  it('rejects a value outside -1000..1000', async () => {
    await expect(sh('true', { oomScoreAdj: 1001 })).rejects.toThrow(/^run: oomScoreAdj 1001: want an integer from -1000 to 1000$/);
  });
});

describe('devices', () => {
  it('--device /dev/zero:/dev/myzero: the host node (c 1:5) in the container, readable and writable', async () => {
    const st = statSync('/dev/zero');
    const r = await sh('stat -c "%F %t:%T" /dev/myzero; head -c 4 /dev/myzero | od -An -tx1; echo hi > /dev/myzero && echo wrote', {
      devices: [{ hostPath: '/dev/zero', containerPath: '/dev/myzero', access: 'rw' }],
    });
    expect(r.exitCode).toBe(0);
    expect(r.out).toBe(`character special file ${major(st.rdev).toString(16)}:${minor(st.rdev).toString(16)}\n 00 00 00 00\nwrote\n`);
  });

  it('a block device (a loop device) keeps its path, type and numbers', async () => {
    const st = statSync('/dev/loop0');
    const r = await sh('stat -c "%F %t:%T" /dev/loop0', { devices: [{ hostPath: '/dev/loop0' }] });
    expect(r.out).toBe(`block special file ${major(st.rdev).toString(16)}:${minor(st.rdev).toString(16)}\n`);
  });

  it('a device in a subdirectory of /dev gets the directory', async () => {
    const r = await sh('stat -c %F /dev/net/mynull', { devices: [{ hostPath: '/dev/null', containerPath: '/dev/net/mynull' }] });
    expect(r.out).toBe('character special file\n');
  });

  it('refuses a missing host path, a non-device and a path outside /dev, in one line', async () => {
    await expect(sh('true', { devices: [{ hostPath: '/dev/nope' }] })).rejects.toThrow(NotFoundError);
    await expect(sh('true', { devices: [{ hostPath: '/dev/nope' }] })).rejects.toThrow(/^run: device \/dev\/nope: no such device on this host$/);
    await expect(sh('true', { devices: [{ hostPath: '/etc/hostname' }] })).rejects.toThrow(/^run: device \/etc\/hostname: not a device node/);
    await expect(sh('true', { devices: [{ hostPath: '/dev/null', containerPath: '/opt/null' }] })).rejects.toThrow(/container path must be a file under \/dev/);
    await expect(sh('true', { devices: [{ hostPath: '/dev/null', containerPath: '/dev/shm/null' }] })).rejects.toThrow(/made by the runtime/);
    await expect(sh('true', { devices: [{ hostPath: '/dev/null', access: 'rx' }] })).rejects.toThrow(/access must be some of r, w and m: rx/);
  });
});

describe('/dev/shm and tmpfs', () => {
  it('/dev/shm is 64 MiB by default and shmSize sets it', async () => {
    expect((await sh('df -k /dev/shm | tail -1')).out).toMatch(/^shm\s+65536\s/);
    expect((await sh('df -k /dev/shm | tail -1', { shmSize: 128 * 1024 * 1024 })).out).toMatch(/^shm\s+131072\s/);
  });

  it('tmpfs mounts come with their options, the mountpoint made, nothing left on the host', async () => {
    const r = await sh('grep " /run \\| /scratch/t " /proc/mounts; touch /run/x && echo ok', {
      tmpfs: [
        { destination: '/run', options: ['rw', 'noexec', 'nosuid', 'nodev', 'size=10m', 'mode=0700'] },
        { destination: '/scratch/t', options: ['rw', 'noexec', 'nosuid', 'nodev', 'exec', 'ro'] },
      ],
    });
    expect(r.exitCode).toBe(0);
    const lines = r.out.split('\n');
    expect(lines.find((l) => l.includes(' /run '))).toMatch(/^tmpfs \/run tmpfs rw,nosuid,nodev,noexec,relatime,size=10240k,mode=700 /);
    expect(lines.find((l) => l.includes(' /scratch/t '))).toMatch(/^tmpfs \/scratch\/t tmpfs ro,nosuid,nodev,relatime /);
    expect(r.out).toContain('ok\n');
    expect(mountsMentioning(fx.dir)).toEqual([]);
  });
});

describe('SELinux and AppArmor labels (this kernel has neither)', () => {
  it('label options are validated, then a notice says they are not applied; the command runs', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const opts = parseSecurityOpts(['label=type:container_t', 'label=level:s0:c1,c2', 'apparmor=tsbuild-test']);
      expect(opts).toEqual({ label: { type: 'container_t', level: 's0:c1,c2' }, apparmorProfile: 'tsbuild-test' });
      const r = await sh('cat /proc/self/attr/exec 2>&1; echo ran', opts);
      expect(r.out).toContain('ran\n');
      const said = warn.mock.calls.map((c) => String(c[0]));
      expect(said).toContain('SELinux is not enabled on this host: --security-opt label options are not applied');
      expect(said).toContain('AppArmor is not enabled on this host: --security-opt apparmor=tsbuild-test is not applied');
      // unconfined and disable ask for nothing to be applied: no notice.
      warn.mockClear();
      await sh('true', parseSecurityOpts(['label=disable', 'apparmor=unconfined']));
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('invalid label and apparmor values are one-line errors', () => {
    expect(() => parseSecurityOpts(['label=type:'])).toThrow(/^--security-opt label=type:: empty SELinux type$/);
    expect(() => parseSecurityOpts(['label=level:x1'])).toThrow(/^--security-opt label=level:x1: invalid SELinux level \(want e\.g\. s0:c1,c2\)$/);
    expect(() => parseSecurityOpts(['label=colour:red'])).toThrow(InvalidArgumentError);
    expect(() => parseSecurityOpts(['apparmor='])).toThrow(/^--security-opt apparmor=: want apparmor=PROFILE or apparmor=unconfined$/);
  });
});

describe('signals', () => {
  it('the command starts with every signal at its default disposition and none blocked, as under runc (a node helper left SIGPIPE and SIGXFSZ ignored)', async () => {
    const r = await shIn(fx, '', { args: ['grep', '-E', '^Sig(Ign|Blk):', '/proc/self/status'] });
    expect(r.out).toBe('SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
    // What a pipeline sees: `yes` ends by SIGPIPE once head is gone; with SIGPIPE ignored it
    // said "yes: (null): Broken pipe" on stderr instead.
    const p = await sh('yes | head -1 >/dev/null');
    expect(p.exitCode).toBe(0);
    expect(p.err).toBe('');
  });
});
