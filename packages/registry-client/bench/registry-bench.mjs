#!/usr/bin/env node
// Pull and push of a Debian image through Debian's docker-registry on 127.0.0.1: tsbuild's
// registry-client (pull → store, push store → empty repository) against `skopeo copy` doing the
// same (docker:// → oci:, oci: → docker://). Each tsbuild run is its own node process so its
// peak RSS (getrusage maxrss) is the operation's alone. Usage: node registry-bench.mjs [runs]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseReference } from '@tsbuild/oci';
import { Store, compressImage } from '@tsbuild/store';
import { RegistryClient, pull, push } from '@tsbuild/registry-client';

const mode = process.argv[2];
if (mode === 'pull' || mode === 'push') {
  // Child: one operation, then report wall time and peak RSS.
  const [, , , root, ref, image] = process.argv;
  const store = await Store.open(root);
  const client = new RegistryClient();
  const t0 = performance.now();
  if (mode === 'pull') await pull(client, store, parseReference(ref));
  else await push(client, store, image, parseReference(ref));
  const ms = performance.now() - t0;
  await client.close();
  process.stdout.write(JSON.stringify({ ms, rssMB: process.resourceUsage().maxRSS / 1024 }) + '\n');
  process.exit(0);
}

const runs = Number(process.argv[2] ?? 3);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-regbench-'));
const self = new URL(import.meta.url).pathname;
function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
let n = 0;
/** A docker-registry with empty storage on a new port: pushes never find blobs there already. */
async function startRegistry() {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const cfg = path.join(tmp, `config-${++n}.yml`);
  writeFileSync(
    cfg,
    `version: 0.1\nlog: { level: error, accesslog: { disabled: true } }\nstorage:\n  filesystem: { rootdirectory: ${tmp}/registry-${n} }\n  delete: { enabled: true }\nhttp:\n  addr: ${host}\n`,
  );
  const proc = spawn('/usr/bin/docker-registry', ['serve', cfg], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://${host}/v2/`).then(() => true, () => false);
    if (ok) break;
    if (i > 200) throw new Error('registry did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  const dir = `${tmp}/registry-${n}`;
  return { host, stop: () => new Promise((r) => { proc.once('exit', r); proc.kill('SIGTERM'); }).then(() => rmSync(dir, { recursive: true, force: true })) };
}
const main = await startRegistry();
const host = main.host;
try {
  // The image: the Debian minbase rootfs the snapshotter benchmark uses (debootstrap, ~200 MB
  // unpacked), imported as one layer, as the issue asks for a Debian image. The store keeps it
  // as a plain tar; compressImage (what push does) gzips it once here, and every timed push sends
  // that gzip blob, as skopeo sends the same blob from its layout.
  const src = await Store.open(path.join(tmp, 'src'));
  const { debianTree } = await import('../../../bench/snapshotter.mjs');
  const { importRootfs } = await import('@tsbuild/builder');
  await importRootfs(src, debianTree(() => {}), 'bench/big:v1');
  const layers = (await src.image(await compressImage(src, (await src.resolve('bench/big:v1')).descriptor, { format: 'gzip' })).manifest()).layers;
  const total = layers.reduce((n, l) => n + l.size, 0);
  const child = (...args) => {
    spawnSync('sync');
    return JSON.parse(sh(process.execPath, [self, ...args]));
  };
  // Each timed operation starts with no dirty pages left by the one before (a 98 MB blob the
  // registry just wrote would otherwise be written back during the next tool's run).
  const time = (fn) => {
    spawnSync('sync');
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  };
  // Seed the registry and an OCI layout for skopeo's push.
  child('push', path.join(tmp, 'src'), `${host}/bench/seed:v1`, 'bench/big:v1');
  sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/bench/seed:v1`, `oci:${tmp}/layout:v1`]);
  const res = { pull: { ours: [], cli: [], skopeo: [], rss: [] }, push: { ours: [], cli: [], skopeo: [], rss: [] } };
  // The whole `tsbuild` command too, start-up included, as a user runs it against `skopeo copy`.
  const cli = path.resolve(path.dirname(self), '../../cli/bin/tsbuild');
  const tsbuild = (root, ...args) => sh(cli, [...args, '--root', root]);
  // Each tsbuild command runs next to the skopeo copy it is compared with, the two in
  // alternating order: the VM's speed drifts over a run (page cache reclaim, neighbours), and a
  // fixed order or a distant slot would charge the drift to one side.
  const pair = (first, second, i) => (i % 2 === 0 ? [first(), second()] : [second(), first()].reverse());
  for (let i = 0; i < runs; i++) {
    const p = child('pull', path.join(tmp, `pull-${i}`), `${host}/bench/seed:v1`);
    res.pull.ours.push(p.ms);
    res.pull.rss.push(p.rssMB);
    const [pullCli, pullSkopeo] = pair(
      () => time(() => tsbuild(path.join(tmp, `cli-pull-${i}`), 'pull', '-q', '--tls-verify=false', `${host}/bench/seed:v1`)),
      () => time(() => sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/bench/seed:v1`, `oci:${tmp}/sk-pull-${i}:v1`])),
      i,
    );
    res.pull.cli.push(pullCli);
    res.pull.skopeo.push(pullSkopeo);
    const r1 = await startRegistry();
    const q = child('push', path.join(tmp, 'src'), `${r1.host}/bench/ours:v1`, 'bench/big:v1');
    await r1.stop();
    res.push.ours.push(q.ms);
    res.push.rss.push(q.rssMB);
    // A fresh registry for each push, started before the timed pair.
    const [r2, r3] = [await startRegistry(), await startRegistry()];
    const [pushCli, pushSkopeo] = pair(
      () => time(() => tsbuild(path.join(tmp, 'src'), 'push', '-q', '--tls-verify=false', 'bench/big:v1', `${r3.host}/bench/cli:v1`)),
      () => time(() => sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${tmp}/layout:v1`, `docker://${r2.host}/bench/skopeo:v1`])),
      i,
    );
    res.push.cli.push(pushCli);
    res.push.skopeo.push(pushSkopeo);
    await r2.stop();
    await r3.stop();
    for (const d of [`pull-${i}`, `sk-pull-${i}`, `cli-pull-${i}`]) rmSync(path.join(tmp, d), { recursive: true, force: true });
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`image: ${(total / 1e6).toFixed(1)} MB in ${layers.length} layers; ${runs} runs, medians`);
  for (const op of ['pull', 'push']) {
    const o = median(res[op].ours);
    const s = median(res[op].skopeo);
    const c = median(res[op].cli);
    console.log(`${op}: tsbuild ${o.toFixed(0)} ms (the whole tsbuild ${op} command: ${c.toFixed(0)} ms), skopeo copy ${s.toFixed(0)} ms, ratio ${(o / s).toFixed(2)}x (command: ${(c / s).toFixed(2)}x), peak RSS ${Math.max(...res[op].rss).toFixed(0)} MB`);
  }
} finally {
  await main.stop();
  rmSync(tmp, { recursive: true, force: true });
}
