import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { HELLO, IMAGE_ID_LINE, REPO, TestStore } from './harness.js';
import { makeHostBaseRootfs } from './host-base.js';

/**
 * tsbuild inside an unprivileged container (issue 17): tsbuild's own image (deploy/Containerfile)
 * run as root of a user namespace (--userns=auto: uid 0 inside is 100000 outside) with docker's
 * default capabilities, so without CAP_SYS_ADMIN; it re-executes itself in a child user namespace
 * and builds there. The base image is made from this machine's binaries (no registry here).
 */
describe('tsbuild in an unprivileged container', () => {
  const t = new TestStore();
  const inputs = path.join(t.tmp, 'inputs');
  const innerStore = path.join(t.tmp, 'inner-store');

  beforeAll(async () => {
    // The mapped root must pass through the temp directory (mkdtemp makes it 0700).
    chmodSync(t.tmp, 0o755);
    const base = await t.run(['import', makeHostBaseRootfs(path.join(t.tmp, 'base')), 'tsbuild-base']);
    if (base.code !== 0) throw new Error(`import of the base failed: ${base.stderr}`);
    const img = await t.run(['build', '-q', '-f', 'deploy/Containerfile', '--build-arg', 'BASE=tsbuild-base', '-t', 'tsbuild', '.'], { cwd: REPO });
    if (img.code !== 0) throw new Error(`build of deploy/Containerfile failed: ${img.stderr}`);
    // One busybox tar for both builds: its headers say root owns the files, whoever reads it.
    mkdirSync(inputs);
    execFileSync('tar', ['-C', makeBusyboxRootfs(path.join(t.tmp, 'busybox')), '-cf', path.join(inputs, 'busybox.tar'), '.']);
    // The inner store belongs to the container's root (uid 100000 here).
    mkdirSync(innerStore);
    chownSync(innerStore, 100000, 100000);
  });
  afterAll(() => t.cleanup());

  it('deploy/Containerfile builds an image whose entrypoint is tsbuild, with only its run-time files', async () => {
    const v = await t.run(['run', '--rm', 'tsbuild', 'version']);
    expect(v.stderr).toBe('');
    expect(v.stdout).toMatch(/^Version:\s+\d/);
    const size = await t.run(['run', '--rm', '--entrypoint', '/bin/sh', 'tsbuild', '-c', 'du -sk /opt/tsbuild/node_modules; ls /opt/tsbuild/packages']);
    const [kb, ...packages] = size.stdout.trim().split('\n');
    expect(Number(kb!.split(/\s/)[0])).toBeLessThan(20_000); // no dev dependencies (~140 MB)
    // The CLI's bundle, the runtime's helpers and the libc addon (packages/linux/dist/linux.node).
    expect(packages).toEqual(['cli', 'linux', 'runtime']);
  });

  it('builds fixtures/hello without CAP_SYS_ADMIN, to the same image ID as root', async () => {
    const root = await t.run(['import', '--timestamp', '0', path.join(inputs, 'busybox.tar'), 'busybox']);
    expect(root.code).toBe(0);
    const expected = await t.run(['build', '--timestamp', '0', '-q', '-t', 'hello', HELLO]);
    expect(expected.stdout.trim()).toMatch(IMAGE_ID_LINE);

    // Mountpoints at the top of the rootfs or already in the image: in a user namespace the
    // image's root-owned directories belong to an unmapped id, and overlay cannot copy them up.
    // /dev/net/tun is not among the container's devices: no slirp4netns, so --network host (the
    // container's own network namespace, which is the host's here).
    const script = [
      'grep CapEff /proc/self/status',
      'cat /proc/self/uid_map',
      '[ -e /dev/net/tun ] && echo tun || echo no-tun',
      'tsbuild import --timestamp 0 /in/busybox.tar busybox >/dev/null',
      'tsbuild build --network host --timestamp 0 -q -t hello /ctx',
    ].join(' && ');
    const r = await t.run([
      'run', '--rm', '--userns=auto', '--security-opt', 'seccomp=unconfined', '--security-opt', 'systempaths=unconfined',
      '-v', `${innerStore}:/var/lib/tsbuild`, '-v', `${inputs}:/in:ro`, '-v', `${HELLO}:/ctx:ro`,
      '--entrypoint', '/bin/sh', 'tsbuild', '-c', script,
    ]);
    expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }).toMatchObject({ code: 0, stderr: '' });
    const [capEff, uidMap, tun, id] = r.stdout.trim().split('\n');
    const caps = BigInt(`0x${capEff!.split('\t')[1]}`);
    expect(caps & (1n << 21n)).toBe(0n); // CAP_SYS_ADMIN
    expect(caps & (1n << 7n)).not.toBe(0n); // CAP_SETUID: the child namespace's uid_map is written with it
    expect(uidMap!.trim().split(/\s+/)).toEqual(['0', '100000', '65536']);
    expect(tun).toBe('no-tun');
    expect(id).toBe(expected.stdout.trim());
  });

  it('without systempaths=unconfined the nested RUN cannot mount its /proc, and says so in one line', async () => {
    const r = await t.run([
      'run', '--rm', '--userns=auto', '--security-opt', 'seccomp=unconfined',
      '-v', `${innerStore}:/var/lib/tsbuild`, '-v', `${inputs}:/in:ro`, '-v', `${HELLO}:/ctx:ro`,
      '--entrypoint', '/bin/sh', 'tsbuild', '-c', 'tsbuild import /in/busybox.tar busybox >/dev/null && tsbuild build --pull never --network host -q /ctx',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    // fs/namespace.c mount_too_revealing: a fresh proc is refused while the visible one has masked paths
    expect(r.stderr).toMatch(/^Error: Dockerfile:7: mount \S+\/rootfs\/proc: EPERM \(the kernel refuses a new \/proc here .* systempaths=unconfined, or procMount: Unmasked in Kubernetes\)\n$/);
  });
});
