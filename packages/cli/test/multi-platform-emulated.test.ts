import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain .mjs fixture without types
import { makeArm64BusyboxRootfs } from '../../../fixtures/busybox-rootfs-arm64.mjs';
import { makeBusyboxRootfs } from '../../../fixtures/busybox-rootfs.mjs';
import { type RunningRegistry, startRegistry } from '../../registry-client/test/registry-server.js';
import { TestStore } from './harness.js';

interface Index {
  mediaType: string;
  manifests: { digest: string; platform?: { architecture: string; variant?: string } }[];
}

/**
 * Issue 18 end to end, with real binaries of both platforms: a list of the amd64 busybox and
 * Debian's arm64 busybox (fixtures), a two-platform build whose RUN runs natively for amd64 and
 * under QEMU for arm64, a cross stage (`FROM --platform=$BUILDPLATFORM`) that runs natively for
 * both, the list pushed and read by skopeo and buildah.
 */
describe('a two-platform build with RUN, under emulation for arm64', () => {
  const t = new TestStore();
  let reg: RunningRegistry;
  let ctx: string;

  beforeAll(async () => {
    reg = await startRegistry();
    for (const [name, dir, platform] of [
      ['bb-amd64', makeBusyboxRootfs(path.join(t.tmp, 'rootfs-amd64')), 'linux/amd64'],
      ['bb-arm64', makeArm64BusyboxRootfs(path.join(t.tmp, 'rootfs-arm64')) as string, 'linux/arm64'],
    ] as const) {
      const r = await t.run(['import', '--platform', platform, dir, name]);
      if (r.code !== 0) throw new Error(`import ${name}: ${r.stderr}`);
    }
    const list = await t.run(['manifest', 'create', 'bblist', 'bb-amd64', 'bb-arm64']);
    if (list.code !== 0) throw new Error(`manifest create: ${list.stderr}`);
    ctx = await t.context({
      Dockerfile: [
        'FROM --platform=$BUILDPLATFORM bblist AS build',
        'ARG TARGETARCH',
        'RUN echo "built on $(uname -m) for $TARGETARCH" > /native',
        'FROM bblist',
        'COPY --from=build /native /native',
        'RUN uname -m > /m',
        '',
      ].join('\n'),
    });
  }, 300_000);
  afterAll(async () => {
    await reg?.stop();
    await t.cleanup();
  });

  it('gives x86_64 in the amd64 image and aarch64 in the arm64 one; the cross stage ran natively for both', async () => {
    const r = await t.run(['build', '-q', '--platform', 'linux/amd64,linux/arm64', '--manifest', 'out', ctx]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
    for (const [platform, arch, goarch] of [['linux/amd64', 'x86_64', 'amd64'], ['linux/arm64', 'aarch64', 'arm64']]) {
      const run = await t.run(['run', '--rm', '--platform', platform!, 'out', 'cat', '/m', '/native']);
      expect(run.stderr).toBe('');
      expect(run.stdout).toBe(`${arch}\nbuilt on x86_64 for ${goarch}\n`);
    }
  }, 300_000);

  it('the pushed list is read by skopeo (both platforms, right digests, copy --all) and buildah pulls its arm64 image', async () => {
    const dest = `127.0.0.1:${reg.port}/multi:1`;
    const push = await t.run(['manifest', 'push', '-q', '--all', '--tls-verify=false', 'out', `docker://${dest}`]);
    expect(push.stderr).toBe('');
    expect(push.code).toBe(0);
    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest}`], { encoding: 'utf8' })) as Index;
    expect(raw.manifests.map((m) => m.platform?.architecture).sort()).toEqual(['amd64', 'arm64']);
    // Each entry's digest is the digest of the manifest the registry serves for it (layers are
    // compressed at push, so these are not the store's digests), and that image is the entry's platform.
    const repo = dest.slice(0, dest.lastIndexOf(':'));
    for (const m of raw.manifests) {
      const body = execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${repo}@${m.digest}`]);
      expect(`sha256:${createHash('sha256').update(body).digest('hex')}`).toBe(m.digest);
      const config = JSON.parse(execFileSync('skopeo', ['inspect', '--config', '--tls-verify=false', `docker://${repo}@${m.digest}`], { encoding: 'utf8' })) as { architecture: string };
      expect(config.architecture).toBe(m.platform?.architecture);
    }
    const copied = path.join(t.tmp, 'copied');
    execFileSync('skopeo', ['copy', '-q', '--all', '--src-tls-verify=false', `docker://${dest}`, `oci:${copied}:x`]);
    const layout = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci:${copied}:x`], { encoding: 'utf8' })) as Index;
    expect(layout.manifests.map((m) => m.digest)).toEqual(raw.manifests.map((m) => m.digest));

    const bh = path.join(t.tmp, 'buildah');
    mkdirSync(bh, { recursive: true });
    writeFileSync(path.join(bh, 'registries.conf'), `[[registry]]\nlocation = "127.0.0.1:${reg.port}"\ninsecure = true\n`);
    const buildah = (...args: string[]): string =>
      execFileSync('buildah', ['--registries-conf', path.join(bh, 'registries.conf'), '--root', path.join(bh, 'root'), '--runroot', path.join(bh, 'run'), '--storage-driver', 'vfs', ...args], { encoding: 'utf8' });
    buildah('pull', '-q', '--tls-verify=false', '--platform', 'linux/arm64', `docker://${dest}`);
    expect(buildah('inspect', '--type', 'image', '--format', '{{.OCIv1.Architecture}}', dest).trim()).toBe('arm64');
    const arm = raw.manifests.find((m) => m.platform?.architecture === 'arm64')!;
    expect(buildah('inspect', '--type', 'image', '--format', '{{.FromImageDigest}}', dest).trim()).toBe(arm.digest);
  }, 300_000);
});
