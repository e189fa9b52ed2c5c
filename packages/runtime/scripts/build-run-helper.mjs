#!/usr/bin/env node
// Compiles the run's helper, src/run-helper.c, into dist/run-helper: the process every RUN starts
// in its new namespaces (docs/DESIGN.md, "The RUN helper is C"). Linked statically: it starts
// without the dynamic loader (~0.5 ms of every RUN step) and needs no library of the host's.
// CC picks the compiler (default cc); scripts/install-deps.sh installs gcc and libc6-dev.
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src', 'run-helper.c');
const out = path.join(root, 'dist', 'run-helper');
mkdirSync(path.dirname(out), { recursive: true });
const cc = process.env.CC || 'cc';
const flags = ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Wno-missing-field-initializers', '-static', '-o', `${out}.tmp`, source];
const r = spawnSync(cc, flags, { stdio: 'inherit' });
if (r.error !== undefined || r.status !== 0) {
  const why = r.error !== undefined ? r.error.message : `exit ${r.status}`;
  console.error(`cannot compile ${source} with ${cc} (${why}): tsbuild's RUN helper needs a C compiler and a static libc (apt-get install gcc libc6-dev)`);
  process.exit(1);
}
renameSync(`${out}.tmp`, out);
