// Issue 18: a build for two platforms into a manifest list, against the same build for one
// platform (target ≤1.3x: the second platform's COPY and config steps should cost little) and
// against `buildah build --platform linux/amd64,linux/arm64 --manifest NAME` (target ≤0.6x).
// The bases: busybox for this machine and a fake linux/arm64 busybox (the same files, its config
// saying arm64/v8, made with working containers), in a list `localhost/bb-multi` in both stores
// (buildah's made by `buildah manifest create/add` of the two images). Only COPY and config
// instructions, so nothing runs for arm64 (no emulation needed).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export async function benchMultiPlatform({ repo, tmp, tsbuild, buildah, sh, compare, storage }) {
  const ctr = tsbuild('from', '-q', 'busybox').trim();
  tsbuild('config', '--arch', 'arm64', '--variant', 'v8', ctr);
  tsbuild('commit', '-q', '--rm', ctr, 'busybox-arm64');
  const { Store, emptyManifestList, readManifestList, withEntry, writeManifestList } = await import(path.join(repo, 'packages/store/dist/index.js'));
  const store = await Store.open(path.join(tmp, 'store'));
  let list = emptyManifestList('oci');
  buildah('manifest', 'create', 'localhost/bb-multi');
  for (const [name, arch] of [['busybox', 'amd64'], ['busybox-arm64', 'arm64']]) {
    const { descriptor } = await store.resolve(name);
    const c = await store.image(descriptor).config();
    list = withEntry(list, { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size, platform: { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) } });
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
  // Both tools made a list of both platforms (the last run's), or the comparison means nothing.
  const theirs = JSON.parse(buildah('manifest', 'inspect', 'localhost/multi')).manifests.map((m) => m.platform.architecture);
  const ours = (await readManifestList(store, 'localhost/multi')).list.manifests.map((m) => m.platform.architecture);
  if (theirs.sort().join() !== 'amd64,arm64') throw new Error(`buildah's list has ${theirs.join(', ')}`);
  if (ours.sort().join() !== 'amd64,arm64') throw new Error(`tsbuild's list has ${ours.join(', ')}`);
}
