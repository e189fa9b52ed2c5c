#!/usr/bin/env node
// Compiles src/native.c, the libc and system calls node:fs lacks, into dist/linux.node, a
// Node-API addon (docs/DESIGN.md, "libc through tsbuild's own addon"). Node-API is the same for
// every node since 8.x: the file works with any node 20+ the CLI runs on. The headers are the
// running node's own (include/node beside its bin/, as node's builds and Debian's nodejs install
// them). CC picks the compiler (default cc); scripts/install-deps.sh installs gcc and libc6-dev.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src', 'native.c');
const out = path.join(root, 'dist', 'linux.node');
const headers = [path.join(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'].find((d) => existsSync(path.join(d, 'node_api.h')));
if (headers === undefined) {
  console.error(`cannot compile ${source}: node's headers (node_api.h) are not in ${path.join(path.dirname(process.execPath), '..', 'include', 'node')}: install a node that ships them (node's own builds and Debian's nodejs do)`);
  process.exit(1);
}
mkdirSync(path.dirname(out), { recursive: true });
const cc = process.env.CC || 'cc';
const flags = ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-fPIC', '-shared', '-fvisibility=hidden', `-I${headers}`, '-o', `${out}.tmp`, source];
const r = spawnSync(cc, flags, { stdio: 'inherit' });
if (r.error !== undefined || r.status !== 0) {
  const why = r.error !== undefined ? r.error.message : `exit ${r.status}`;
  console.error(`cannot compile ${source} with ${cc} (${why}): tsbuild's libc addon needs a C compiler (apt-get install gcc libc6-dev)`);
  process.exit(1);
}
renameSync(`${out}.tmp`, out);
