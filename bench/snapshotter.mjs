#!/usr/bin/env node
// Snapshotter benchmarks, side by side on one Debian minbase rootfs (~200 MB, ~6800 entries):
//   - commit (what a build does by default, as buildah does: a plain tar, no compression): diff()
//     of an active snapshot holding the tree → ingestLayer('none') into a Store, against
//     `buildah commit` of the same change; and where its time goes: diff+sha256 to /dev/null,
//     the same into a file without fsync, and the fsync the content store does before its rename;
//   - commit+compress (`--disable-compression=false`): the same with gzip -1, against
//     `tar -cf - . | pigz -p2 -1`;
//   - compress at push: compressLayer (gzip -1) of the stored plain layer, the cost a first push
//     pays, against `pigz -p2 -1 < layer.tar`;
//   - apply: apply(layer.tar.gz) and apply(layer.tar) into a new directory, against `tar -xzf` / `tar -xf`;
//   - prepare+mount of a snapshot on a 100-layer chain (no reference);
//   - peak RSS of commit, commit+compress, compress and apply (each runs in a child process that
//     reports its maxRSS).
// `node bench/snapshotter.mjs` runs it alone (BENCH_RUNS=N runs per measurement, median; default 3);
// bench/run.mjs may import benchSnapshotter().
// Needs root, buildah, pigz and GNU tar; debootstrap once if /tmp/debroot is missing.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'node:fs/promises';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const CACHE_TREE = '/var/cache/tsbuild-bench/debian-minbase';

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
function time(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The Debian minbase tree: /tmp/debroot if someone made it, else a cached debootstrap. */
export function debianTree(log = console.log) {
  if (existsSync('/tmp/debroot/usr/bin')) return '/tmp/debroot';
  if (!existsSync(path.join(CACHE_TREE, 'usr/bin'))) {
    log(`creating ${CACHE_TREE} with debootstrap (once)`);
    rmSync(CACHE_TREE, { recursive: true, force: true });
    mkdirSync(path.dirname(CACHE_TREE), { recursive: true });
    sh('debootstrap', ['--variant=minbase', 'bookworm', CACHE_TREE, 'http://deb.debian.org/debian'], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  return CACHE_TREE;
}

/** Runs one measured operation in a fresh node process; returns { ms, rssMB, ... } it printed. */
function child(...args) {
  const out = sh(process.execPath, [self, '--child', ...args]);
  return JSON.parse(out.trim().split('\n').at(-1));
}

/** Mounts an overlay whose options may exceed one page (mountOverlay shortens them), or a bind. */
async function mountOverlay(mounts, target) {
  const linux = await import('@tsbuild/linux');
  const [m] = mounts;
  if (m.type === 'bind') return linux.mount(m.source, target, null, linux.MS.BIND, null);
  linux.mountOverlay(m.source, target, 0, m.options.join(','));
}

function tinyLayer(i) {
  // one file per layer, written with GNU tar so the bench does not depend on internals
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-bench-layer-'));
  try {
    execFileSync('sh', ['-c', `mkdir -p ${dir}/t/files && echo ${i} > ${dir}/t/files/f${i}`]);
    return execFileSync('tar', ['--format=posix', '--mtime=@0', '--owner=0', '--group=0', '-C', `${dir}/t`, '-cf', '-', '.']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Returns rows { benchmark, tsbuild_ms, reference, reference_ms, ratio } (ratio = tsbuild /
 * reference; below 1 means tsbuild is faster). Peak RSS rows carry MB in tsbuild_ms, unit 'MB'.
 */
export async function benchSnapshotter({ runs = 3, log = console.log } = {}) {
  const { OverlaySnapshotter, unpack } = await import('@tsbuild/snapshotter');
  const { umount } = await import('@tsbuild/linux');
  const tree = debianTree(log);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-bench-snap-'));
  const rows = [];
  const row = (benchmark, ours, reference, theirs, extra = {}) => {
    const r = { benchmark, tsbuild_ms: Math.round(ours), reference, reference_ms: theirs === undefined ? '-' : Math.round(theirs), ...extra };
    r.ratio = theirs === undefined ? '-' : +(r.tsbuild_ms / r.reference_ms).toFixed(2);
    rows.push(r);
    log(`${benchmark.padEnd(44)} tsbuild ${String(r.tsbuild_ms).padStart(6)} ${extra.unit ?? 'ms'}   ${reference.padEnd(16)} ${String(r.reference_ms).padStart(6)} ${extra.unit ?? 'ms'}   ratio ${r.ratio}`);
  };
  const bRoot = path.join(tmp, 'buildah-root');
  const bRunroot = path.join(tmp, 'buildah-runroot');
  const buildah = (...args) => sh('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', ...args]).trim();
  try {
    const size = Number(sh('du', ['-sb', tree]).split('\t')[0]);
    log(`tree ${tree}: ${(size / 1e6).toFixed(0)} MB; median of ${runs} runs, ${os.cpus().length} cores`);

    // ---- commit (plain tar, the default) and commit + compress ----
    const snapRoot = path.join(tmp, 'snapshots');
    const s = await OverlaySnapshotter.open(snapRoot);
    await s.prepare('commit-k');
    sh('cp', ['-a', `${tree}/.`, await s.fsDir('commit-k')]);
    const ctr = buildah('from', '--pull=never', 'scratch');
    buildah('copy', ctr, tree, '/');
    const plain = [];
    const gz = [];
    const pigz = [];
    const bah = [];
    const hashOnly = [];
    const noFsync = [];
    const fsync = [];
    const compress = [];
    const pigzFile = [];
    const rss = { plain: 0, gz: 0, compress: 0 };
    let layerDigest;
    let plainDigest;
    let plainSize = 0;
    const keepStore = path.join(tmp, 'store-keep');
    const plainTar = path.join(tmp, 'layer.tar');
    for (let i = 0; i < runs; i++) {
      const storeDir = i === 0 ? keepStore : path.join(tmp, `store-${i}`);
      const plainStore = path.join(tmp, `store-plain-${i}`);
      sh('sync', []);
      const p = child('commit', snapRoot, 'commit-k', plainStore, 'none');
      plain.push(p.ms);
      rss.plain = Math.max(rss.plain, p.rssMB);
      plainDigest = p.digest;
      plainSize = p.size;
      sh('sync', []);
      bah.push(time(() => buildah('commit', '-q', ctr, `bench-${i}`)));
      sh('sync', []);
      const parts = child('commit-parts', snapRoot, 'commit-k', path.join(tmp, 'parts.tar'));
      hashOnly.push(parts.hashMs);
      noFsync.push(parts.writeMs);
      fsync.push(parts.fsyncMs);
      rmSync(path.join(tmp, 'parts.tar'), { force: true });
      sh('sync', []);
      const r = child('commit', snapRoot, 'commit-k', storeDir, 'gzip');
      gz.push(r.ms);
      rss.gz = Math.max(rss.gz, r.rssMB);
      layerDigest = r.digest;
      if (i > 0) rmSync(storeDir, { recursive: true, force: true });
      sh('sync', []);
      pigz.push(time(() => sh('sh', ['-c', `tar -C '${tree}' -cf - . | pigz -p2 -1 > '${tmp}/ref.tar.gz'`])));
      // The push-time cost: compressing the stored plain layer (a fresh store each run, so no
      // remembered compression), against pigz over the same tar file.
      sh('sync', []);
      const c = child('compress', plainStore, plainDigest, String(plainSize));
      compress.push(c.ms);
      rss.compress = Math.max(rss.compress, c.rssMB);
      if (i === 0) sh('cp', [path.join(plainStore, 'blobs/sha256', plainDigest.slice(7)), plainTar]);
      sh('sync', []);
      pigzFile.push(time(() => sh('sh', ['-c', `pigz -p2 -1 < '${plainTar}' > '${tmp}/ref2.tar.gz'`])));
      rmSync(plainStore, { recursive: true, force: true });
    }
    log(`plain layer ${(plainSize / 1e6).toFixed(1)} MB; gzip -1 layer from the last commit+compress run`);
    row('commit debian rootfs (plain tar, default)', median(plain), 'buildah commit', median(bah));
    row('  of which diff+sha256 → /dev/null', median(hashOnly), '-', undefined);
    row('  diff+sha256 → file, no fsync', median(noFsync), '-', undefined);
    row('  fsync of the 200 MB blob', median(fsync), '-', undefined);
    row('commit+compress debian rootfs (gzip -1)', median(gz), 'tar | pigz -p2 -1', median(pigz));
    row('commit+compress debian rootfs (gzip -1)', median(gz), 'buildah commit', median(bah));
    row('compress at push: stored plain → gzip -1', median(compress), 'pigz -p2 -1 < tar', median(pigzFile));

    // ---- apply ----
    const layerFile = path.join(tmp, 'layer.tar.gz');
    const { Store } = await import('@tsbuild/store');
    const store = await Store.open(keepStore);
    await pipeline(await store.content.read(layerDigest), createWriteStream(layerFile));
    const applied = [];
    const untar = [];
    let rssApply = 0;
    for (let i = 0; i < runs; i++) {
      const a = path.join(tmp, `apply-${i}`);
      const b = path.join(tmp, `untar-${i}`);
      mkdirSync(a);
      mkdirSync(b);
      sh('sync', []);
      const r = child('apply', layerFile, a);
      applied.push(r.ms);
      rssApply = Math.max(rssApply, r.rssMB);
      sh('sync', []);
      untar.push(time(() => sh('tar', ['-xzf', layerFile, '-C', b])));
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
    row('apply debian rootfs layer (.tar.gz)', median(applied), 'tar -xzf', median(untar));
    const appliedPlain = [];
    const untarPlain = [];
    for (let i = 0; i < runs; i++) {
      const a = path.join(tmp, `apply-plain-${i}`);
      const b = path.join(tmp, `untar-plain-${i}`);
      mkdirSync(a);
      mkdirSync(b);
      sh('sync', []);
      const r = child('apply', plainTar, a);
      appliedPlain.push(r.ms);
      rssApply = Math.max(rssApply, r.rssMB);
      sh('sync', []);
      untarPlain.push(time(() => sh('tar', ['-xf', plainTar, '-C', b])));
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
    row('apply debian rootfs layer (.tar)', median(appliedPlain), 'tar -xf', median(untarPlain));

    // ---- prepare + mount on a 100-layer chain ----
    const chainRoot = path.join(tmp, 'chain');
    const cs = await OverlaySnapshotter.open(chainRoot);
    const layers = Array.from({ length: 100 }, (_, i) => tinyLayer(i)).map((t) => ({
      diffID: `sha256:${createHash('sha256').update(t).digest('hex')}`,
      open: async () => Readable.from([t]),
    }));
    const top = await unpack(cs, layers);
    const pm = [];
    for (let i = 0; i < Math.max(5, runs); i++) {
      const target = path.join(tmp, `m${i}`);
      mkdirSync(target);
      const t0 = performance.now();
      await mountOverlay(await cs.prepare(`k${i}`, top), target);
      pm.push(performance.now() - t0);
      if (!existsSync(path.join(target, 'files/f99'))) throw new Error('100-layer mount does not show the top layer');
      umount(target);
    }
    row('prepare+mount on a 100-layer chain', median(pm), '-', undefined);

    row('peak RSS commit (plain tar)', rss.plain, '-', undefined, { unit: 'MB' });
    row('peak RSS commit+compress', rss.gz, '-', undefined, { unit: 'MB' });
    row('peak RSS compress at push', rss.compress, '-', undefined, { unit: 'MB' });
    row('peak RSS apply', rssApply, '-', undefined, { unit: 'MB' });
    return rows;
  } finally {
    spawnSync('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', 'rm', '--all'], { stdio: 'ignore' });
    spawnSync('sh', ['-c', `umount -R '${bRoot}/overlay' 2>/dev/null; grep -o '${tmp}/m[0-9]*' /proc/mounts | xargs -r -n1 umount 2>/dev/null; true`]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The measured side of one operation, in its own process so maxRSS is its own. */
async function runChild([op, ...args]) {
  const t0 = performance.now();
  const result = {};
  if (op === 'commit') {
    const [snapRoot, key, storeDir, compression] = args;
    const { OverlaySnapshotter, diff } = await import('@tsbuild/snapshotter');
    const { Store, ingestLayer } = await import('@tsbuild/store');
    const s = await OverlaySnapshotter.open(snapRoot);
    const store = await Store.open(storeDir);
    const t1 = performance.now();
    const l = await ingestLayer(store.content, diff(s, key), { compression });
    result.ms = performance.now() - t1;
    result.digest = l.digest;
    result.size = l.size;
  } else if (op === 'commit-parts') {
    // Where a plain commit's time goes, without the content store: the tar hashed and dropped;
    // the tar hashed into a file (what the blob writer does before commit); that file's fsync.
    const [snapRoot, key, file] = args;
    const { OverlaySnapshotter, diff } = await import('@tsbuild/snapshotter');
    const s = await OverlaySnapshotter.open(snapRoot);
    const hashing = () => {
      const h = createHash('sha256');
      return new Transform({ transform: (c, _e, cb) => (h.update(c), cb(null, c)) });
    };
    let t = performance.now();
    await pipeline(diff(s, key), hashing(), new Writable({ write: (_c, _e, cb) => cb() }));
    result.hashMs = performance.now() - t;
    // Written as the content store's blob writer writes: FileHandle writes from a 1 MiB-buffered Writable.
    t = performance.now();
    const fh = await open(file, 'w');
    const toFile = new Writable({
      highWaterMark: 1 << 20,
      write: (c, _e, cb) => {
        const all = async () => {
          for (let off = 0; off < c.length; ) off += (await fh.write(c, off, c.length - off)).bytesWritten;
        };
        all().then(() => cb(), cb);
      },
    });
    await pipeline(diff(s, key), hashing(), toFile);
    result.writeMs = performance.now() - t;
    t = performance.now();
    await fh.sync();
    result.fsyncMs = performance.now() - t;
    await fh.close();
  } else if (op === 'compress') {
    const [storeDir, digest, size] = args;
    const { Store, compressLayer } = await import('@tsbuild/store');
    const store = await Store.open(storeDir);
    const t1 = performance.now();
    const c = await compressLayer(store, { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: Number(size) }, { format: 'gzip' });
    result.ms = performance.now() - t1;
    result.digest = c.digest;
  } else if (op === 'apply') {
    const [layerFile, dir] = args;
    const { apply } = await import('@tsbuild/snapshotter');
    const t1 = performance.now();
    await apply(createReadStream(layerFile), dir);
    result.ms = performance.now() - t1;
  } else {
    throw new Error(`unknown child op ${op}`);
  }
  result.totalMs = performance.now() - t0;
  result.rssMB = Math.round(process.resourceUsage().maxRSS / 1024);
  console.log(JSON.stringify(result));
}

if (process.argv[1] === self) {
  if (process.argv[2] === '--child') {
    await runChild(process.argv.slice(3));
  } else {
    const results = await benchSnapshotter({ runs: Number(process.env.BENCH_RUNS ?? 3) });
    console.log(JSON.stringify({ results }));
  }
}
