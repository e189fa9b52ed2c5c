import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain .mjs fixture without types
import { makeArm64BusyboxRootfs } from '../../../fixtures/busybox-rootfs-arm64.mjs';
import { BIN, REPO, type Result, TestStore } from './harness.js';

/**
 * RUN for a foreign architecture, under QEMU user emulation: the arm64 busybox of
 * fixtures/busybox-rootfs-arm64.mjs, imported with --platform linux/arm64, run on this (amd64)
 * machine through the qemu-aarch64 entry scripts/install-deps.sh registers with binfmt_misc.
 */
describe('RUN under QEMU user emulation', () => {
  const t = new TestStore();
  beforeAll(async () => {
    const rootfs = path.join(t.tmp, 'rootfs-arm64');
    makeArm64BusyboxRootfs(rootfs);
    const r = await t.run(['import', '--platform', 'linux/arm64', rootfs, 'busybox-arm64']);
    if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
  });
  afterAll(() => t.cleanup());

  /**
   * tsbuild in a user namespace with a binfmt_misc instance of its own (Linux 6.7 made
   * binfmt_misc mountable per user namespace), where nothing is registered: a real missing
   * emulator, which the kernel sees too (an arm64 binary fails with ENOEXEC there), while the
   * machine's entries, which other tests use meanwhile, stay as they are. Every qemu-user-static
   * architecture is registered machine-wide, so no platform lacks an emulator there.
   */
  function withoutEmulators(args: string[]): Promise<Result> {
    const script = 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && test ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 && exec "$@"';
    const argv = ['--user', '--map-root-user', '--mount', 'sh', '-c', script, 'sh', BIN, ...args];
    return new Promise((resolve, reject) => {
      const child = spawn('unshare', argv, { cwd: REPO, env: { ...process.env, TSBUILD_ROOT: t.root }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  }
  const snapshots = async () => (await t.run(['snapshots', '--format', 'json'])).stdout;
  const containers = async () => (await t.run(['containers', '--format', 'json'])).stdout;

  it('import --platform records the platform; an invalid one is one line and status 1, and no image', async () => {
    const img = JSON.parse((await t.run(['inspect', '--type', 'image', 'busybox-arm64'])).stdout) as { Config: { os: string; architecture: string } };
    expect([img.Config.os, img.Config.architecture]).toEqual(['linux', 'arm64']);
    const bad = await t.run(['import', '--platform', 'linux', path.join(t.tmp, 'rootfs-arm64'), 'badplatform']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('Error: invalid platform "linux": want os/arch[/variant]\n');
    expect((await t.run(['images'])).stdout).not.toContain('badplatform');
  });

  it('tsbuild run of an arm64 image runs it emulated, with docker\'s capabilities, seccomp filter and cgroup limits', async () => {
    const r = await t.run(['run', '--rm', 'busybox-arm64', 'sh', '-c', 'uname -m; grep -E "^(CapEff|Seccomp):" /proc/self/status']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('aarch64\nCapEff:\t00000000a80425fb\nSeccomp:\t2\n');
    expect(r.code).toBe(0);
    // qemu's memory is the guest's: the container's memory cgroup limits both.
    const oom = await t.run(['run', '--rm', '-m', '32m', 'busybox-arm64', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=100M', 'count=1']);
    expect(oom.code).toBe(137);
    expect(oom.stderr).toContain('Error: the container was killed: out of memory (limit 32 MiB)');
  });

  it('the host\'s seccomp filter answers the syscalls qemu makes for the guest', async () => {
    // unshare(CLONE_NEWUSER) needs no capability, and docker's profile refuses unshare without
    // CAP_SYS_ADMIN: EPERM from the filter. Unconfined, the kernel itself answers EINVAL, because
    // qemu-user is multi-threaded (unshare(2)): so the EPERM came from the filter, compiled for
    // the host's architecture, not from the kernel.
    const confined = await t.run(['run', '--rm', 'busybox-arm64', 'unshare', '-U', 'true']);
    expect(confined.code).toBe(1);
    expect(confined.stderr).toBe('unshare: unshare(0x10000000): Operation not permitted\n');
    const unconfined = await t.run(['run', '--rm', '--security-opt', 'seccomp=unconfined', 'busybox-arm64', 'unshare', '-U', 'true']);
    expect(unconfined.stderr).toBe('unshare: unshare(0x10000000): Invalid argument\n');
  });

  it('a build FROM the arm64 image runs its RUN emulated and the layer holds the result', async () => {
    const ctx = await t.context({ Dockerfile: 'FROM busybox-arm64\nRUN uname -m > /m\n' });
    // --platform says the target: without it the target is this machine's and the arm64 base is
    // a finding (InvalidBaseImagePlatform, as BuildKit warns).
    const b = await t.run(['build', '-q', '--platform', 'linux/arm64', '-t', 'built-arm64', ctx]);
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    // Read from the committed layer on the host, without running anything.
    const ctr = (await t.run(['from', 'built-arm64'])).stdout.trim();
    const mnt = (await t.run(['mount', ctr])).stdout.trim();
    expect(readFileSync(path.join(mnt, 'm'), 'utf8')).toBe('aarch64\n');
    await t.run(['umount', ctr]);
    await t.run(['rm', ctr]);
  });

  it('from + run of a working container made from the arm64 image runs emulated', async () => {
    const ctr = (await t.run(['from', 'busybox-arm64'])).stdout.trim();
    const r = await t.run(['run', ctr, '--', 'sh', '-c', 'uname -m > /w; cat /w']);
    expect(r.stdout).toBe('aarch64\n');
    expect(r.code).toBe(0);
    const mnt = (await t.run(['mount', ctr])).stdout.trim();
    expect(readFileSync(path.join(mnt, 'w'), 'utf8')).toBe('aarch64\n');
    await t.run(['umount', ctr]);
    await t.run(['rm', ctr]);
  });

  it('with no emulator registered, run and build fail before anything starts: one line, status 1, nothing left', async () => {
    expect(existsSync('/proc/sys/fs/binfmt_misc/qemu-aarch64')).toBe(true);
    const line = 'platform linux/arm64/v8: no emulator for aarch64 is registered with binfmt_misc (install Debian\'s qemu-user-static; scripts/install-deps.sh registers it with the F flag)';
    const [snapsBefore, ctrsBefore] = [await snapshots(), await containers()];
    const run = await withoutEmulators(['run', 'busybox-arm64', 'uname', '-m']);
    expect(run.stderr).toBe(`Error: ${line}\n`);
    expect(run.stdout).toBe('');
    expect(run.code).toBe(1);
    // Not the RUN of the build test above: a cached RUN runs nothing and needs no emulator.
    const ctx = await t.context({ Dockerfile: 'FROM busybox-arm64\nRUN uname -m > /never\n' });
    const build = await withoutEmulators(['build', '-q', '--platform', 'linux/arm64', '-t', 'never', ctx]);
    expect(build.stderr).toBe(`Error: Dockerfile:2: ${line}\n`);
    expect(build.code).toBe(1);
    expect(await snapshots()).toBe(snapsBefore);
    expect(await containers()).toBe(ctrsBefore);
    expect((await t.run(['images'])).stdout).not.toContain('never');
  });
});
