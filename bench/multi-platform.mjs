// Issue 18: a build for two platforms into a manifest list, against the same build for one
// platform (target ≤1.3x: the second platform's COPY and config steps should cost little) and
// against `buildah build --platform linux/amd64,linux/arm64 --manifest NAME` (target ≤0.6x).
// Then a two-platform build with one RUN, which runs under QEMU for arm64 in both tools (target
// ≤0.8x buildah's: tsbuild builds the platforms in parallel).
// The bases: busybox for this machine and Debian's arm64 busybox (fixtures/busybox-rootfs-arm64.mjs,
// imported with --platform linux/arm64), in a list `localhost/bb-multi` in both stores (buildah's
// made by `buildah manifest create/add` of the two images).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeArm64BusyboxRootfs } from '../fixtures/busybox-rootfs-arm64.mjs';

export async function benchMultiPlatform({ repo, tmp, tsbuild, buildah, sh, compare, storage }) {
  tsbuild('import', '--platform', 'linux/arm64', makeArm64BusyboxRootfs(path.join(tmp, 'rootfs-arm64')), 'busybox-arm64');
  const { Store, configPlatform, emptyManifestList, readManifestList, withEntry, writeManifestList } = await import(path.join(repo, 'packages/store/dist/index.js'));
  const store = await Store.open(path.join(tmp, 'store'));
  let list = emptyManifestList('oci');
  buildah('manifest', 'create', 'localhost/bb-multi');
  for (const [name, arch] of [['busybox', 'amd64'], ['busybox-arm64', 'arm64']]) {
    const { descriptor } = await store.resolve(name);
    list = withEntry(list, { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size, platform: configPlatform(await store.image(descriptor).config()) });
    // skopeo 1.9 cannot copy a list into containers-storage (--all): each image, then buildah's list.
    const archive = path.join(tmp, `bb-${arch}.tar`);
    tsbuild('save', name, '-o', archive, '--format', 'oci-archive');
    sh('skopeo', ['copy', '-q', `oci-archive:${archive}`, `${storage}localhost/bb-${arch}:latest`]);
    buildah('manifest', 'add', 'localhost/bb-multi', `containers-storage:localhost/bb-${arch}:latest`);
  }
  await writeManifestList(store, 'localhost/bb-multi', list);

  const ctx = path.join(tmp, 'ctx-multi');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM localhost/bb-multi\nARG TARGETARCH\nLABEL arch=$TARGETARCH\nENV APP=/app\nWORKDIR /\nCOPY app.txt /app/app.txt\nCOPY conf.txt /app/conf.txt\nCMD ["cat", "/app/app.txt"]\n');
  writeFileSync(path.join(ctx, 'app.txt'), 'app\n');
  writeFileSync(path.join(ctx, 'conf.txt'), 'conf\n');
  const two = () => tsbuild('build', '-q', '--no-cache', '--platform', 'linux/amd64,linux/arm64', '--manifest', 'localhost/multi', ctx);
  compare('two-platform build (COPY + config)', two, () => tsbuild('build', '-q', '--no-cache', '--platform', 'linux/amd64', '-t', 'single', ctx), 'tsbuild 1 platf.');
  compare(
    'two-platform build (COPY + config)',
    two,
    () => buildah('build', '--runtime', '/usr/sbin/runc', '--layers', '--pull=never', '-q', '--no-cache', '--platform', 'linux/amd64,linux/arm64', '--manifest', 'localhost/multi', ctx),
    'buildah 2 platf.',
    // buildah adds to an existing list: each run starts without it, as tsbuild's first run does.
    () => {
      try {
        buildah('manifest', 'rm', 'localhost/multi');
      } catch {
        // not there yet
      }
    },
  );
  const rctx = path.join(tmp, 'ctx-multi-run');
  mkdirSync(rctx, { recursive: true });
  writeFileSync(path.join(rctx, 'Dockerfile'), 'FROM localhost/bb-multi\nCOPY app.txt /app.txt\nRUN uname -m > /m\n');
  writeFileSync(path.join(rctx, 'app.txt'), 'app\n');
  compare(
    'two-platform build with one emulated RUN',
    () => tsbuild('build', '-q', '--no-cache', '--platform', 'linux/amd64,linux/arm64', '--manifest', 'localhost/multi-run', rctx),
    () => buildah('build', '--runtime', '/usr/sbin/runc', '--layers', '--pull=never', '-q', '--no-cache', '--platform', 'linux/amd64,linux/arm64', '--manifest', 'localhost/multi-run', rctx),
    'buildah 2 platf.',
    () => {
      try {
        buildah('manifest', 'rm', 'localhost/multi-run');
      } catch {
        // not there yet
      }
    },
  );
  // Both tools made a list of both platforms (the last run's), or the comparison means nothing.
  const theirs = JSON.parse(buildah('manifest', 'inspect', 'localhost/multi')).manifests.map((m) => m.platform.architecture);
  const ours = (await readManifestList(store, 'localhost/multi')).list.manifests.map((m) => m.platform.architecture);
  if (theirs.sort().join() !== 'amd64,arm64') throw new Error(`buildah's list has ${theirs.join(', ')}`);
  if (ours.sort().join() !== 'amd64,arm64') throw new Error(`tsbuild's list has ${ours.join(', ')}`);
}
