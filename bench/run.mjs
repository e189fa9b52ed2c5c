#!/usr/bin/env node
// Side-by-side benchmarks: the same inputs through tsbuild and the reference tool (buildah with
// runc, skopeo, tar|pigz), in one run, with the ratio printed (tsbuild / reference; below 1.0
// means tsbuild is faster). Needs root and what scripts/install-deps.sh installs.
// BENCH_RUNS=N sets the runs per measurement (median); BENCH_ONLY=build,runtime,containers,snapshotter,registry,inspect,platforms,rootless picks sections.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs } from '../fixtures/busybox-rootfs.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The command as users run it (npm links `tsbuild` to this script).
const bin = path.join(repo, 'packages/cli/bin/tsbuild');
const runs = Number(process.env.BENCH_RUNS ?? 5);
const only = new Set((process.env.BENCH_ONLY ?? 'build,runtime,containers,snapshotter,registry,inspect,platforms,rootless').split(','));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-bench-'));
const store = path.join(tmp, 'store');
const bRoot = path.join(tmp, 'buildah-root');
const bRunroot = path.join(tmp, 'buildah-runroot');
const results = [];

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
const tsbuild = (...args) => sh(bin, args, { env: { ...process.env, TSBUILD_ROOT: store } });
const buildah = (...args) => sh('buildah', ['--root', bRoot, '--runroot', bRunroot, '--storage-driver', 'overlay', ...args]);
const bud = (...args) => buildah('bud', '--runtime', '/usr/sbin/runc', '--layers', '--pull=never', '-q', ...args);

function time(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function report(name, ours, theirs, refName) {
  const row = { benchmark: name, tsbuild_ms: Math.round(ours), reference: refName, reference_ms: Math.round(theirs) };
  row.ratio = +(row.tsbuild_ms / row.reference_ms).toFixed(2);
  results.push(row);
  console.log(`${name.padEnd(44)} tsbuild ${String(row.tsbuild_ms).padStart(6)} ms   ${refName.padEnd(16)} ${String(row.reference_ms).padStart(6)} ms   ratio ${row.ratio}`);
}
/**
 * Runs `prepare` untimed before each timed run of both tools, interleaved. Each timed run starts
 * after `sync`: the runs write tens of MB (10,000 files, a layer) and delete as much, and without
 * it the kernel's writeback and discards of one tool's run land in the next tool's timing.
 */
function compare(name, ours, theirs, refName, prepare = () => {}) {
  const a = [];
  const b = [];
  for (let i = 0; i < runs; i++) {
    prepare(i);
    sh('sync', []);
    a.push(time(ours));
    sh('sync', []);
    b.push(time(theirs));
  }
  report(name, median(a), median(b), refName);
}

try {
  // One base image for both tools: a busybox-static rootfs imported by tsbuild, handed to buildah via skopeo.
  const rootfs = makeBusyboxRootfs(path.join(tmp, 'rootfs'));
  tsbuild('import', rootfs, 'busybox');
  const archive = path.join(tmp, 'busybox.tar');
  tsbuild('save', 'busybox', '-o', archive, '--format', 'oci-archive');
  sh('skopeo', ['copy', '-q', `oci-archive:${archive}`, `containers-storage:[overlay@${bRoot}+${bRunroot}]docker.io/library/busybox:latest`]);
  console.log(`median of ${runs} runs each, on ${os.cpus().length} cores`);

  if (only.has('build')) {
    console.log('\n# builds (issues 2 and 6)');
    const hello = path.join(repo, 'fixtures/hello');
    compare('cold build of fixtures/hello', () => tsbuild('build', '-q', '--no-cache', '-t', 'hello', hello), () => bud('--no-cache', '-t', 'hello', hello), 'buildah bud');
    compare('fully cached rebuild of fixtures/hello', () => tsbuild('build', '-q', '-t', 'hello', hello), () => bud('-t', 'hello', hello), 'buildah bud');
    // COPY of 10,000 small files
    const many = path.join(tmp, 'ctx-many');
    mkdirSync(path.join(many, 'files'), { recursive: true });
    for (let d = 0; d < 100; d++) {
      mkdirSync(path.join(many, 'files', `d${d}`));
      for (let f = 0; f < 100; f++) writeFileSync(path.join(many, 'files', `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`);
    }
    writeFileSync(path.join(many, 'Dockerfile'), 'FROM busybox\nCOPY files /files\n');
    compare('COPY of 10,000 small files (no cache)', () => tsbuild('build', '-q', '--no-cache', '-t', 'many', many), () => bud('--no-cache', '-t', 'many', many), 'buildah bud');
    // rebuild after a one-file change: the COPY and the RUN after it run again
    const one = path.join(tmp, 'ctx-one');
    mkdirSync(one, { recursive: true });
    writeFileSync(path.join(one, 'Dockerfile'), 'FROM busybox\nRUN echo base > /base\nCOPY app.txt /app.txt\nRUN cat /app.txt > /out\n');
    writeFileSync(path.join(one, 'app.txt'), 'v0\n');
    tsbuild('build', '-q', '-t', 'one', one);
    bud('-t', 'one', one);
    compare(
      'rebuild after a one-file change',
      () => tsbuild('build', '-q', '-t', 'one', one),
      () => bud('-t', 'one', one),
      'buildah bud',
      (i) => writeFileSync(path.join(one, 'app.txt'), `v${i + 1}\n`),
    );
    compare('save oci-archive of hello', () => tsbuild('save', 'hello', '-o', path.join(tmp, 'h1.tar'), '--format', 'oci-archive'), () => sh('skopeo', ['copy', '-q', `containers-storage:[overlay@${bRoot}+${bRunroot}]localhost/hello:latest`, `oci-archive:${path.join(tmp, 'h2.tar')}`]), 'skopeo copy');
    const peak = spawnSync('/usr/bin/time', ['-f', '%M', bin, 'build', '-q', '--no-cache', '-t', 'many', many], { env: { ...process.env, TSBUILD_ROOT: store }, encoding: 'utf8' });
    console.log(`peak RSS of a build (COPY of 10,000 files): ${Math.round(Number(peak.stderr.trim().split('\n').at(-1)) / 1024)} MB`);
  }

  if (only.has('runtime')) {
    console.log('\n# runtime (issue 4)');
    const rt = path.join(tmp, 'ctx-runtrue');
    mkdirSync(rt, { recursive: true });
    writeFileSync(path.join(rt, 'Dockerfile'), `FROM busybox\n${'RUN true\n'.repeat(10)}`);
    const a = [];
    const b = [];
    for (let i = 0; i < runs; i++) {
      a.push(time(() => tsbuild('build', '-q', '--no-cache', '-t', 'runtrue', rt)));
      b.push(time(() => bud('--no-cache', '-t', 'runtrue', rt)));
    }
    // per step: (10 steps - the fixed cost of a build) / 10, with the fixed cost from a FROM-only build
    const fromOnly = path.join(tmp, 'ctx-fromonly');
    mkdirSync(fromOnly, { recursive: true });
    writeFileSync(path.join(fromOnly, 'Dockerfile'), 'FROM busybox\n');
    const a0 = median(Array.from({ length: runs }, () => time(() => tsbuild('build', '-q', '--no-cache', fromOnly))));
    const b0 = median(Array.from({ length: runs }, () => time(() => bud('--no-cache', fromOnly))));
    report('one RUN true step (per step, of 10)', (median(a) - a0) / 10, (median(b) - b0) / 10, 'buildah+runc');
  }

  if (only.has('containers')) {
    console.log('\n# working containers (issue 16)');
    // One shell script per tool, as a user would write it: from + run + commit (--rm, so that
    // the runs start alike). buildah gets the bench's root and runc.
    const script = (cli, runFlags) =>
      `set -e\nctr=$(${cli} from busybox)\n${cli} run ${runFlags}$ctr -- sh -c 'echo hi > /f'\n${cli} commit -q --rm $ctr wc-bench >/dev/null\n`;
    const ours = script(bin, '');
    const theirs = script(`buildah --root ${bRoot} --runroot ${bRunroot} --storage-driver overlay`, '--runtime /usr/sbin/runc ');
    const env = { ...process.env, TSBUILD_ROOT: store };
    compare('from + run (echo hi > /f) + commit, a script', () => sh('sh', ['-c', ours], { env }), () => sh('sh', ['-c', theirs]), 'buildah script');
  }

  if (only.has('snapshotter')) {
    console.log('\n# snapshotter (issue 3)');
    const { benchSnapshotter } = await import('./snapshotter.mjs');
    results.push(...(await benchSnapshotter({ runs: Math.min(runs, 3) })));
  }

  if (only.has('registry')) {
    console.log('\n# registry (issue 5)');
    // At least 9 rounds: push against skopeo is within this VM's run-to-run drift (±5%), and a
    // round takes ~3 s.
    const r = spawnSync(process.execPath, [path.join(repo, 'packages/registry-client/bench/registry-bench.mjs'), String(Math.max(runs, 9))], { stdio: 'inherit' });
    if (r.status !== 0) console.log('registry benchmark failed');
  }

  if (only.has('inspect')) {
    console.log('\n# inspect (issue 7)');
    const { debianTree } = await import('./snapshotter.mjs');
    tsbuild('import', debianTree(), 'debian');
    const ms = median(Array.from({ length: runs }, () => time(() => tsbuild('diff', '--format', 'json', 'debian'))));
    const peak = spawnSync('/usr/bin/time', ['-f', '%M', bin, 'diff', '--format', 'json', 'debian'], { env: { ...process.env, TSBUILD_ROOT: store }, encoding: 'utf8', maxBuffer: 1 << 28 });
    const row = { benchmark: 'diff + wasted-space report, Debian image', tsbuild_ms: Math.round(ms), reference: 'target 2000 ms', reference_ms: 2000 };
    row.ratio = +(row.tsbuild_ms / 2000).toFixed(2);
    results.push(row);
    console.log(`${row.benchmark.padEnd(44)} tsbuild ${String(row.tsbuild_ms).padStart(6)} ms   (target 2000 ms; peak RSS ${Math.round(Number(peak.stderr.trim().split('\n').at(-1)) / 1024)} MB)`);
  }

  if (only.has('platforms')) {
    console.log('\n# multi-platform builds (issue 18)');
    const { benchMultiPlatform } = await import('./multi-platform.mjs');
    await benchMultiPlatform({ repo, tmp, tsbuild, buildah, sh, compare, storage: `containers-storage:[overlay@${bRoot}+${bRunroot}]` });
  }

  if (only.has('rootless')) {
    console.log('\n# rootless (issue 17)');
    const { benchRootless } = await import('./rootless.mjs');
    benchRootless({ bin, compare, hello: path.join(repo, 'fixtures/hello'), archive: path.join(tmp, 'busybox.tar'), rootBuild: () => tsbuild('build', '-q', '--no-cache', '-t', 'hello', path.join(repo, 'fixtures/hello')) });
  }

  console.log(`\n${JSON.stringify({ results })}`);
} finally {
  spawnSync('buildah', ['--root', bRoot, '--runroot', bRunroot, 'rm', '--all'], { stdio: 'ignore' });
  spawnSync('sh', ['-c', `grep -o " ${bRoot}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null; true`]);
  rmSync(tmp, { recursive: true, force: true });
}
