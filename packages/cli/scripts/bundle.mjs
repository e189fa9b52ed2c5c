#!/usr/bin/env node
// Bundles the compiled CLI (dist/) and the workspace packages it imports into bundle/:
//   bundle/main.cjs             the command table, help and version (dist/main.js)
//   bundle/commands/<id>.cjs    one self-contained file per command
//   bundle/load-command.cjs     loads a command's file with V8's code cache (see that file)
// Measured: a cached rebuild spent ~110 of its ~300 ms resolving, reading and compiling ~400
// module files; bundled it starts in ~60% of the time. CommonJS rather than ES modules, one file
// per command rather than shared chunks: `tsbuild push` reached its registry ~6 ms sooner, and
// CommonJS can use a code cache, which node 20 offers no ES module (another ~4 ms).
// Native modules (koffi, zstd-napi) stay external and load from node_modules as before.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'bundle');
const dist = path.join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });

// `tsbuild version` says which commit it was built from, as `buildah version` does; outside a git
// checkout (a packed tarball) the line is left out. turbo replays a cached bundle only for the same
// inputs (this package and its dependencies), so a replayed commit may be older but its code is the same.
function git(...args) {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}
const head = git('rev-parse', '--verify', '-q', 'HEAD');
const commit = head && git('status', '--porcelain', '--untracked-files=no') !== '' ? `${head}-dirty` : head;
const runtimeDir = path.dirname(createRequire(import.meta.url).resolve('@tsbuild/runtime/package.json'));
const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version;
// The seccomp compiler's and docker's default profile's digest (runtime's defaultProfileIdentity),
// computed here from the code being bundled: a run then names its cached program without
// loading node:crypto to hash the compiler and the profile again.
const { defaultProfileIdentity } = await import(pathToFileURL(path.join(runtimeDir, 'dist', 'seccomp', 'program-cache.js')).href);
const seccompIdentity = defaultProfileIdentity();

const common = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: ['koffi', 'zstd-napi'],
  // import('node:https') and the like become require(): no ES module loader at all.
  supported: { 'dynamic-import': false },
  // import.meta.url in the packages (createRequire, package files) becomes the bundle file's URL.
  // TSBUILD_RUNTIME_DIR: the runtime package (its helper) relative to bundle/commands/, so that a
  // run does not resolve it through node_modules (~3 ms before its helper can start).
  define: {
    'import.meta.url': '__bundleUrl',
    TSBUILD_VERSION: JSON.stringify(version),
    TSBUILD_GIT_COMMIT: JSON.stringify(commit),
    TSBUILD_RUNTIME_DIR: JSON.stringify(path.relative(path.join(outdir, 'commands'), runtimeDir)),
    TSBUILD_SECCOMP_IDENTITY: JSON.stringify(seccompIdentity),
  },
  // Each file is written as the function load-command.cjs calls (CommonJS's own wrapper), so the
  // loader compiles the file's text as it is, not a copy of it concatenated inside the wrapper:
  // the from/run/commit script 415.6 → 402.8 ms (41 interleaved runs; three more series agreed).
  banner: { js: "(function (exports, require, module, __filename, __dirname) {const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  footer: { js: '})' },
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
};

const commands = readdirSync(path.join(dist, 'commands')).filter((f) => f.endsWith('.js')).map((f) => f.slice(0, -'.js'.length));
await build({
  ...common,
  entryPoints: commands.map((c) => path.join(dist, 'commands', `${c}.js`)),
  outdir: path.join(outdir, 'commands'),
  outExtension: { '.js': '.cjs' },
});

// main's `import('./commands/<id>.js')` becomes load-command.cjs's load of bundle/commands/<id>.cjs.
const commandFiles = {
  name: 'command-files',
  setup(b) {
    b.onResolve({ filter: /^\.\/commands\/[\w-]+\.js$/ }, (a) => ({ path: path.basename(a.path, '.js'), namespace: 'tsbuild-command' }));
    b.onLoad({ filter: /.*/, namespace: 'tsbuild-command' }, (a) => ({
      contents: `export default require('./load-command.cjs')(${JSON.stringify(a.path)}).default;`,
      loader: 'js',
    }));
    b.onResolve({ filter: /^\.\/load-command\.cjs$/ }, (a) => ({ path: a.path, external: true }));
  },
};
// `tsbuild --help` lists every command's summary: written here from the command classes, so the
// bundled help loads none of the command files (~90 ms for all 21).
const summaries = [];
for (const c of commands) summaries.push([c, (await import(pathToFileURL(path.join(dist, 'commands', `${c}.js`)).href)).default.summary ?? '']);
const commandSummaries = {
  name: 'command-summaries',
  setup(b) {
    b.onResolve({ filter: /^\.\/command-summaries\.js$/ }, () => ({ path: 'summaries', namespace: 'tsbuild-summaries' }));
    b.onLoad({ filter: /.*/, namespace: 'tsbuild-summaries' }, () => ({
      contents: `const summaries = ${JSON.stringify(summaries)};\nexport function commandSummaries() { return Promise.resolve(summaries); }\n`,
      loader: 'js',
    }));
  },
};
await build({ ...common, entryPoints: [path.join(dist, 'main.js')], outfile: path.join(outdir, 'main.cjs'), plugins: [commandFiles, commandSummaries] });
copyFileSync(path.join(root, 'scripts', 'load-command.cjs'), path.join(outdir, 'load-command.cjs'));
