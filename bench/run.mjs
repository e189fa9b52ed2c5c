#!/usr/bin/env node
// Side-by-side benchmarks: the same inputs through tsbuild and the reference tool, in one run,
// with the ratio printed (tsbuild time / reference time; below 1.0 means tsbuild is faster).
// Needs root, busybox-static, buildah, skopeo and runc (scripts/install-deps.sh installs them).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox-rootfs.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(repo, 'packages/cli/bin/run.js');
const runs = Number(process.env.BENCH_RUNS ?? 5);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-bench-'));
const store = path.join(tmp, 'store');
const bRoot = path.join(tmp, 'buildah-root');
const bRunroot = path.join(tmp, 'buildah-runroot');

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
const tsbuild = (...args) => sh(process.execPath, [bin, ...args], { env: { ...process.env, TSBUILD_ROOT: store } });
const buildah = (...args) => sh('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', ...args]);

function time(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
const results = [];
function compare(name, ours, theirs, refName) {
  const a = [];
  const b = [];
  for (let i = 0; i < runs; i++) {
    a.push(time(ours));
    b.push(time(theirs));
  }
  const row = { benchmark: name, tsbuild_ms: Math.round(median(a)), reference: refName, reference_ms: Math.round(median(b)) };
  row.ratio = +(row.tsbuild_ms / row.reference_ms).toFixed(2);
  results.push(row);
  console.log(`${name.padEnd(40)} tsbuild ${String(row.tsbuild_ms).padStart(6)} ms   ${refName.padEnd(8)} ${String(row.reference_ms).padStart(6)} ms   ratio ${row.ratio}`);
}

try {
  // One base image for both tools: a busybox-static rootfs imported by tsbuild, handed to buildah via skopeo.
  const rootfs = makeBusyboxRootfs(path.join(tmp, 'rootfs'));
  tsbuild('import', rootfs, 'busybox');
  const archive = path.join(tmp, 'busybox.tar');
  tsbuild('save', 'busybox', '-o', archive, '--format', 'oci-archive');
  sh('skopeo', ['copy', '-q', `oci-archive:${archive}`, `containers-storage:[overlay@${bRoot}+${bRunroot}]docker.io/library/busybox:latest`]);

  const hello = path.join(repo, 'fixtures/hello');
  console.log(`median of ${runs} runs each, on ${os.cpus().length} cores`);
  compare(
    'build fixtures/hello (no cache)',
    () => tsbuild('build', '-q', '-t', 'hello', hello),
    () => buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--no-cache', '--pull=never', '-q', '-t', 'hello', hello),
    'buildah',
  );
  const rt = path.join(tmp, 'ctx-runtrue');
  execFileSync('mkdir', ['-p', rt]);
  execFileSync('sh', ['-c', `printf 'FROM busybox\\nRUN true\\nRUN true\\nRUN true\\nRUN true\\nRUN true\\n' > ${rt}/Dockerfile`]);
  compare(
    'build 5 x RUN true (no cache)',
    () => tsbuild('build', '-q', '-t', 'runtrue', rt),
    () => buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--no-cache', '--pull=never', '-q', '-t', 'runtrue', rt),
    'buildah',
  );
  compare(
    'save oci-archive of hello',
    () => tsbuild('save', 'hello', '-o', path.join(tmp, 'h1.tar'), '--format', 'oci-archive'),
    () => sh('skopeo', ['copy', '-q', `containers-storage:[overlay@${bRoot}+${bRunroot}]localhost/hello:latest`, `oci-archive:${path.join(tmp, 'h2.tar')}`]),
    'skopeo',
  );
  console.log(JSON.stringify({ results }));
} finally {
  spawnSync('buildah', ['--root', bRoot, '--runroot', bRunroot, 'rm', '--all'], { stdio: 'ignore' });
  spawnSync('sh', ['-c', `umount -R ${bRoot}/overlay 2>/dev/null; umount ${bRoot}/overlay 2>/dev/null; true`]);
  rmSync(tmp, { recursive: true, force: true });
}
