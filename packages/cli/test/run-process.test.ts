import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore, mountsUnder } from './harness.js';

/** --ulimit, --oom-score-adj, --device, --shm-size, --tmpfs and LSM labels, read from inside the container. */
describe('tsbuild run and build: the process and /dev flags', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  const FLAGS = ['--ulimit', 'nofile=512:2048', '--ulimit', 'nproc=100', '--oom-score-adj', '300', '--device', '/dev/zero:/dev/myzero:rw', '--shm-size', '32m', '--tmpfs', '/tmp:size=10m,mode=0700'];

  it('run: each flag is visible inside the container', async () => {
    const r = await t.run(['run', '--rm', ...FLAGS, 'busybox', 'sh', '-c', 'ulimit -n; ulimit -Hn; ulimit -u; cat /proc/self/oom_score_adj; stat -c "%F %t:%T" /dev/myzero; echo x > /dev/myzero && echo wrote; df -k /dev/shm | tail -1; grep " /tmp " /proc/mounts']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 6)).toEqual(['512', '2048', '100', '300', 'character special file 1:5', 'wrote']);
    expect(lines[6]).toMatch(/^shm\s+32768\s/);
    expect(lines[7]).toMatch(/^tmpfs \/tmp tmpfs rw,nosuid,nodev,noexec,relatime,size=10240k,mode=700 /);
  });

  it('build: every RUN gets them too', async () => {
    const ctx = await t.context({
      Dockerfile: [
        'FROM busybox',
        'RUN test "$(ulimit -n):$(ulimit -Hn)" = 512:2048 && test "$(cat /proc/self/oom_score_adj)" = 300',
        'RUN test "$(stat -c %t:%T /dev/myzero)" = 1:5 && df -k /dev/shm | grep -Eq "^shm +32768 " && grep -q " /tmp tmpfs rw,nosuid,nodev,noexec,relatime,size=10240k,mode=700 " /proc/mounts',
        '',
      ].join('\n'),
    });
    const r = await t.run(['build', '-q', ...FLAGS, '-t', 'procflags', ctx]);
    expect(r.stderr, r.stderr).toBe('');
    expect(r.code).toBe(0);
    // The tmpfs at /tmp hid the image's /tmp and put nothing into the layers.
    const ls = await t.run(['run', '--rm', 'procflags', 'ls', '-A', '/tmp']);
    expect(ls.stdout).toBe('');
    // A --tmpfs mountpoint the image lacks is made for the RUN and not left in its layer.
    const c2 = await t.context({ Dockerfile: 'FROM busybox\nRUN test -d /scratchpad && touch /scratchpad/x\n' });
    expect((await t.run(['build', '-q', '--tmpfs', '/scratchpad', '-t', 'tmpfsmp', c2])).code).toBe(0);
    const mp = await t.run(['run', '--rm', 'tmpfsmp', 'sh', '-c', 'test -e /scratchpad && echo left || echo gone']);
    expect(mp.stdout).toBe('gone\n');
  });

  it('--device ACCESS is enforced by the devices cgroup: a read-only loop device opens for reading, not for writing', async () => {
    const img = path.join(t.tmp, 'loop.img');
    writeFileSync(img, Buffer.alloc(1 << 20));
    const dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
    try {
      const probe = 'dd if=/dev/l0 of=/dev/null bs=512 count=1 2>/dev/null && echo read || echo no-read; dd if=/dev/zero of=/dev/l0 bs=512 count=1 2>/dev/null && echo wrote || echo no-write';
      const ro = await t.run(['run', '--rm', '--device', `${dev}:/dev/l0:r`, 'busybox', 'sh', '-c', probe]);
      expect(ro.stdout).toBe('read\nno-write\n');
      const rw = await t.run(['run', '--rm', '--device', `${dev}:/dev/l0`, 'busybox', 'sh', '-c', probe]);
      expect(rw.stdout).toBe('read\nwrote\n');
    } finally {
      execFileSync('losetup', ['-d', dev]);
    }
  });

  it('--security-opt label and apparmor: validated, then one notice each that this host applies neither', async () => {
    const r = await t.run(['run', '--rm', '--security-opt', 'label=type:container_t', '--security-opt', 'apparmor=docker-default', 'busybox', 'echo', 'ran']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ran\n');
    expect(r.stderr).toBe(
      'Warning: SELinux is not enabled on this host: --security-opt label options are not applied\n' +
        'Warning: AppArmor is not enabled on this host: --security-opt apparmor=docker-default is not applied\n',
    );
  });

  it('each bad value is one line, exit status 1, before anything starts, nothing left behind', async () => {
    const snapshots = (): number => readdirSync(`${t.root}/snapshots`).length;
    const before = snapshots();
    const cases: [string[], RegExp][] = [
      [['--ulimit', 'nofiles=1'], /^Error: --ulimit nofiles=1: unknown limit nofiles \(want one of core, cpu, .*\)\n$/],
      [['--ulimit', 'nofile=2048:1024'], /^Error: --ulimit nofile=2048:1024: soft limit 2048 is above hard limit 1024\n$/],
      [['--ulimit', 'nofile=lots'], /^Error: --ulimit nofile=lots: lots is not a limit \(a number, or -1 for unlimited\)\n$/],
      [['--oom-score-adj', '1001'], /^Error: --oom-score-adj 1001: want an integer from -1000 to 1000\n$/],
      [['--oom-score-adj=-5x'], /^Error: --oom-score-adj -5x: want an integer from -1000 to 1000\n$/],
      [['--device', '/dev/nope'], /^Error: --device \/dev\/nope: no such device on this host\n$/],
      [['--device', '/etc/hostname'], /^Error: --device \/etc\/hostname: not a device node \(want a character or block device\)\n$/],
      [['--device', '/dev/null:/dev/null:rx'], /^Error: --device \/dev\/null:\/dev\/null:rx: access must be some of r, w and m: rx\n$/],
      [['--shm-size', '0'], /^Error: --shm-size 0: want a size above 0, such as 64m\n$/],
      [['--tmpfs', 'run'], /^Error: --tmpfs run: the path must be absolute\n$/],
      [['--tmpfs', '/run:size=big'], /^Error: --tmpfs \/run:size=big: unknown option size=big .*\n$/],
      [['--security-opt', 'label=level:bogus'], /^Error: --security-opt label=level:bogus: invalid SELinux level \(want e\.g\. s0:c1,c2\)\n$/],
      [['--security-opt', 'apparmor'], /^Error: --security-opt apparmor: want seccomp=unconfined\|PROFILE\.json, .*\n$/],
    ];
    for (const [flags, re] of cases) {
      for (const cmd of [['run', '--rm', ...flags, 'busybox', 'true'], ['from', ...flags, 'busybox']]) {
        const r = await t.run(cmd);
        expect(r.stderr, cmd.join(' ')).toMatch(re);
        expect(r.code, cmd.join(' ')).toBe(1);
      }
    }
    expect(snapshots()).toBe(before);
    expect((await t.run(['containers', '-q'])).stdout).toBe('');
    expect(mountsUnder(t.root)).toEqual([]);
  });
});
