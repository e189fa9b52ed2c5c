import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, TestStore, mountsUnder } from './harness.js';

describe('tsbuild run', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('runs the command as PID 1 with docker\'s defaults and propagates its exit status', async () => {
    const r = await t.run(['run', '--rm', 'busybox', 'sh', '-c', 'echo $$; hostname; grep -E "^(CapEff|Seccomp):" /proc/self/status; exit 4']);
    expect(r.code).toBe(4);
    const [pid, host, capEff, seccomp] = r.stdout.trim().split('\n');
    expect(pid).toBe('1');
    expect(host).toMatch(/^[0-9a-f]{12}$/);
    expect(capEff).toBe('CapEff:\t00000000a80425fb');
    expect(seccomp).toBe('Seccomp:\t2');
  });

  it('passes everything after the image to the container, flags included', async () => {
    const r = await t.run(['run', '--rm', 'busybox', 'echo', '-n', '--rm', '-e', 'x']);
    expect(r.stdout).toBe('--rm -e x');
  });

  it('-e, -w, -u, --entrypoint and -i with stdin', async () => {
    const r = await t.run(['run', '--rm', '-i', '-e', 'A=1', '-w', '/tmp', '-u', 'app', '--entrypoint', '/bin/sh', 'busybox', '-c', 'echo $A $(pwd) $(id -un); cat'], { input: 'from stdin\n' });
    expect(r.stdout).toBe('1 /tmp app\nfrom stdin\n');
  });

  it('without --rm the container\'s changes stay in a snapshot; with --rm they go', async () => {
    const before = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout).length;
    await t.run(['run', 'busybox', 'touch', '/kept']);
    await t.run(['run', '--rm', 'busybox', 'touch', '/gone']);
    const after = JSON.parse((await t.run(['snapshots', '--format', 'json'])).stdout) as { name: string; kind: string }[];
    expect(after.length).toBe(before + 1);
    expect(after.filter((s) => s.name.startsWith('run-') && s.kind === 'active')).toHaveLength(1);
  });

  it('--memory: an out-of-memory kill is reported as such', async () => {
    const r = await t.run(['run', '--rm', '-m', '32m', 'busybox', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=100M', 'count=1']);
    expect(r.code).toBe(137);
    expect(r.stderr).toContain('Error: the container was killed: out of memory (limit 32 MiB)');
  });

  it('--network none, --cap-drop, --security-opt no-new-privileges, --init', async () => {
    const net = await t.run(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'ls /sys/class/net']);
    expect(net.stdout.trim()).toBe('lo');
    const caps = await t.run(['run', '--rm', '--cap-drop', 'CHOWN', '--security-opt', 'no-new-privileges', 'busybox', 'grep', '-E', '^(CapEff|NoNewPrivs):', '/proc/self/status']);
    expect(caps.stdout).toBe('CapEff:\t00000000a80425fa\nNoNewPrivs:\t1\n');
    // The init is PID 1 (shown as `init`, the link it is executed through) and the command its child.
    const init = await t.run(['run', '--rm', '--init', 'busybox', 'sh', '-c', 'cat /proc/1/comm; echo $PPID']);
    expect(init.stdout.split('\n').slice(0, 2)).toEqual(['init', '1']);
    // The same with runc: the init bound at /dev/init and run as the process.
    const runcInit = await t.run(['run', '--rm', '--init', '--runtime', 'runc', 'busybox', 'sh', '-c', 'cat /proc/1/comm; echo $PPID']);
    expect(runcInit.stdout.split('\n').slice(0, 2)).toEqual(['init', '1']);
  });

  it('-v binds a host directory or file (read-only with :ro); a bad one is one line and status 1', async () => {
    writeFileSync(`${t.tmp}/vol-file`, 'from the host\n');
    const r = await t.run(['run', '--rm', '-v', `${t.tmp}:/vol`, '-v', `${t.tmp}/vol-file:/etc/vol-file:ro`, 'busybox', 'sh', '-c', 'cat /etc/vol-file; echo written > /vol/out; echo x > /etc/vol-file || echo refused']);
    expect(r.stdout).toBe('from the host\nrefused\n');
    expect(readFileSync(`${t.tmp}/out`, 'utf8')).toBe('written\n');
    const bad = await t.run(['run', '--rm', '-v', 'cache:/data', 'busybox', 'true']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('Error: --volume cache:/data: named volumes are not supported: give an absolute host path instead of cache\n');
  });

  it('--security-opt systempaths=unconfined leaves /proc without masked or read-only paths', async () => {
    // mounts below /proc (masks and read-only binds), then whether /proc/sys is one of them
    const probe = 'grep -c " /proc/[^ ]* " /proc/self/mountinfo; grep -c " /proc/sys " /proc/self/mountinfo';
    const masked = await t.run(['run', '--rm', 'busybox', 'sh', '-c', probe]);
    expect(Number(masked.stdout.split('\n')[0])).toBeGreaterThan(1);
    expect(masked.stdout.split('\n')[1]).toBe('1');
    const open = await t.run(['run', '--rm', '--security-opt', 'systempaths=unconfined', 'busybox', 'sh', '-c', probe]);
    expect(open.stdout).toBe('0\n0\n');
  });

  it('--userns=auto maps root inside to uid 100000 outside', async () => {
    // the mapped root must be able to pass through the store's parent directories (mkdtemp makes 0700)
    chmodSync(t.tmp, 0o755);
    const r = await t.run(['run', '--rm', '--userns=auto', 'busybox', 'sh', '-c', 'id -u; cat /proc/self/uid_map; touch /inside && stat -c %u /inside']);
    expect(r.stderr).toBe('');
    const [uid, map, owner] = r.stdout.trim().split('\n');
    expect(uid).toBe('0');
    expect(map!.trim().split(/\s+/)).toEqual(['0', '100000', '65536']);
    expect(owner).toBe('0');
    const bad = await t.run(['run', '--rm', '--uidmap', '1:100000:10', 'busybox', 'true']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/container id 0/);
  });

  it('-t gives the command a pty of its own devpts, as its controlling terminal, even without one on stdin', async () => {
    const r = await t.run(['run', '--rm', '-t', 'busybox', 'sh', '-c', 'tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; ps -o pid,sid,comm | grep -c "^ *1 *1 "; exit 5']);
    expect(r.code).toBe(5);
    // A terminal's output: lines end in CR LF (the pty's onlcr), stderr merged into it.
    expect(r.stdout).toBe('/dev/pts/0\r\nall-ttys\r\n1\r\n');
    expect(r.stderr).toBe('');
    // Nothing is lost between the command's exit and the end of the relay.
    const many = await t.run(['run', '--rm', '-t', 'busybox', 'seq', '1', '20000']);
    expect(many.stdout.split('\r\n')).toEqual([...Array.from({ length: 20000 }, (_, i) => String(i + 1)), '']);
    // runc relays its pty through a terminal of tsbuild's: without any (setsid: no controlling
    // terminal, stdin not one), said in one line before anything is set up.
    const runc = spawnSync('setsid', ['-w', BIN, 'run', '--rm', '-t', '--runtime', 'runc', 'busybox', 'true'], { env: { ...process.env, TSBUILD_ROOT: t.root }, encoding: 'utf8' });
    expect(runc.status).toBe(1);
    expect(runc.stderr).toMatch(/^Error: run: a terminal \(-t\) through runc needs one of tsbuild's own: .*\n$/);
    expect(runc.stderr.split('\n')).toHaveLength(2);
    // -it wants a terminal to read from, as docker does.
    const noTty = await t.run(['run', '--rm', '-it', 'busybox', 'true']);
    expect(noTty.code).toBe(1);
    expect(noTty.stderr).toMatch(/^Error: the input device is not a TTY/);
  });

  it('-t with --init: the init leads the session on the pty and puts the command in its foreground group', async () => {
    // /proc/PID/stat: field 5 the process group, 6 the session, 8 the terminal's foreground group.
    const script = 'read -r _ _ _ _ pgrp sid _ tpgid _ < /proc/$$/stat; [ "$pgrp" = "$tpgid" ] && [ "$pgrp" = "$$" ] && echo foreground; echo sid=$sid ppid=$PPID; tty; exit 5';
    const r = await t.run(['run', '--rm', '-t', '--init', 'busybox', 'sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(5);
    expect(r.stdout).toBe('foreground\r\nsid=1 ppid=1\r\n/dev/pts/0\r\n');
  });

  /** `tsbuild ARGS` under script(1): a terminal of ROWSxCOLS (controlling, and stdin unless redirected); `input` is what is typed. */
  const underTerminal = (rows: number, cols: number, args: string, input = '') => {
    const r = spawnSync('script', ['-qec', `stty rows ${rows} cols ${cols}; ${BIN} ${args}`, '/dev/null'], { env: { ...process.env, TSBUILD_ROOT: t.root }, input, encoding: 'utf8' });
    return { status: r.status, out: r.stdout.replace(/\r/g, '') };
  };
  const TYPED = 'stty size\necho typed-$((6*7))\nexit 3\n';

  it('-it relays a terminal: an interactive shell reads what is typed, gets the size, and its exit status is the run\'s', () => {
    const r = underTerminal(30, 90, 'run --rm -it busybox sh', TYPED);
    expect(r.status).toBe(3);
    expect(r.out).toContain('\n30 90\n');
    expect(r.out).toContain('\ntyped-42\n');
  });

  it('-t and -it with --runtime runc: runc makes the pty and relays it through tsbuild\'s terminal', () => {
    // -t alone, stdin from /dev/null: runc relays through the controlling terminal.
    const t1 = underTerminal(25, 70, "run --rm -t --runtime runc busybox sh -c 'tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; stty size; echo err >&2; exit 5' </dev/null");
    expect(t1.status).toBe(5);
    expect(t1.out).toBe('/dev/pts/0\nall-ttys\n25 70\nerr\n');
    const it2 = underTerminal(30, 90, 'run --rm -it --runtime runc busybox sh', TYPED);
    expect(it2.status).toBe(3);
    expect(it2.out).toContain('\n30 90\n');
    expect(it2.out).toContain('\ntyped-42\n');
  });

  it('leaves no mount behind', () => {
    expect(mountsUnder(t.tmp)).toEqual([]);
  });
});

describe('container flags on build', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('a RUN over --memory fails saying it ran out of memory', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN dd if=/dev/zero of=/dev/null bs=100M count=1\n' });
    const r = await t.run(['build', '--memory', '32m', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('Error: Dockerfile:2: RUN was killed: out of memory (limit 32 MiB, from --memory) (tsbuild debug last to enter the failed step)\n');
  });

  it('--network none and --pids-limit reach RUN', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN ls /sys/class/net > /nets && cat /sys/fs/cgroup/pids/pids.max > /pids 2>/dev/null || true\n' });
    const r = await t.run(['build', '-q', '--network', 'none', '--pids-limit', '50', '-t', 'flags', ctx]);
    expect(r.code).toBe(0);
    const out = await t.run(['run', '--rm', 'flags', 'cat', '/nets']);
    expect(out.stdout).toBe('lo\n');
  });
});

describe('build --secret', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('mounts the secret for the RUN that asks for it and keeps it out of the layers', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-size && ! ls /run/secrets/other 2>/dev/null\n', tok: '' });
    const secretFile = `${t.tmp}/token.txt`;
    writeFileSync(secretFile, 's3cr3t-value');
    const r = await t.run(['build', '-q', '-t', 'sec', '--secret', `id=tok,src=${secretFile}`, ctx]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await t.run(['run', '--rm', 'sec', 'cat', '/secret-size'])).stdout.trim()).toBe('12');
    const exported = `${t.tmp}/sec.tar`;
    expect((await t.run(['export', 'sec', '-o', exported])).code).toBe(0);
    expect(readFileSync(exported).includes('s3cr3t-value')).toBe(false);
    expect((await t.run(['history', '--no-trunc', 'sec'])).stdout).not.toContain('s3cr3t-value');
  });
});
