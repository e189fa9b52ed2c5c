#!/usr/bin/env node
// Bundles the compiled CLI (dist/) and the workspace packages it imports into bundle/:
//   bundle/main.cjs             the command table, help and version (dist/main.js)
//   bundle/commands/<id>.cjs    one file per command, with the packages it imports
//   bundle/chunks/<name>.cjs    the runtime and the registry client, for the commands that only
//                               import() them (see CHUNKS)
//   bundle/load-command.cjs     loads these files with V8's code cache (see that file)
// Measured: a cached rebuild spent ~110 of its ~300 ms resolving, reading and compiling ~400
// module files; bundled it starts in ~60% of the time. CommonJS rather than ES modules, one file
// per command rather than a file per package: `tsbuild push` reached its registry ~6 ms sooner;
// CommonJS can use a code cache, which node 20 offers no ES module (another ~4 ms); and a file
// per package loses the tree shaking: `from` then read and evaluated all of five packages (its
// files to the end of `from`'s load 31.5 ms, against 24.3 for one file).
// zstd-napi's native module stays external and loads from node_modules; the linux package's
// addon is found beside that package (TSBUILD_LINUX_ADDON).
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
const linuxAddon = path.join(path.dirname(createRequire(import.meta.url).resolve('@tsbuild/linux/package.json')), 'dist', 'linux.node');
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
  external: ['zstd-napi'],
  // import('node:https') and the like become require(): no ES module loader at all.
  supported: { 'dynamic-import': false },
  // import.meta.url in the packages (createRequire, package files) becomes the bundle file's URL.
  // TSBUILD_RUNTIME_DIR: the runtime package (its helper) relative to bundle/commands/ and
  // bundle/chunks/ (as deep), so that a run does not resolve it through node_modules (~3 ms
  // before its helper can start).
  define: {
    'import.meta.url': '__bundleUrl',
    TSBUILD_VERSION: JSON.stringify(version),
    TSBUILD_GIT_COMMIT: JSON.stringify(commit),
    TSBUILD_RUNTIME_DIR: JSON.stringify(path.relative(path.join(outdir, 'commands'), runtimeDir)),
    // The linux package's addon, the same way (and for main.cjs from bundle/, below).
    TSBUILD_LINUX_ADDON: JSON.stringify(path.relative(path.join(outdir, 'commands'), linuxAddon)),
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

// The runtime (~135 KB bundled) and the registry client (~60 KB) are files of their own for the
// commands that only import() them: `from` pulls only an image it does not have, `commit` never
// runs a container, `run` of a working container pulls nothing. Such a command no longer reads
// them: in this VM, where a page fault costs ~14 µs, reading and compiling them cost `from` ~290
// page faults and ~4 ms, `commit` ~325 (the from/run/commit script 368.2 → 360.4 ms, 31
// interleaved runs). A chunk imports the other packages from the command's file, which shares
// what the chunk needs of them (load-command.cjs `share`): one instance of each module in a
// process, so the errors' classes and the modules' state are the same on both sides. A command
// that imports a chunk's package statically (`info`) keeps it in its own file.
const CHUNKS = ['runtime', 'registry-client'];
const packageOf = (id) => id.slice('@tsbuild/'.length);
const externalChunks = (names) => ({
  name: 'chunks',
  setup(b) {
    b.onResolve({ filter: /^@tsbuild\/[\w-]+$/ }, (a) => (names.includes(packageOf(a.path)) ? { path: a.path, external: true } : undefined));
  },
});

// Each chunk, and the names it imports from the other packages.
const chunkImports = {};
for (const chunk of CHUNKS) {
  const entry = createRequire(import.meta.url).resolve(`@tsbuild/${chunk}`);
  const others = {
    name: 'other-packages',
    setup(b) {
      b.onResolve({ filter: /^@tsbuild\/[\w-]+$/ }, (a) => (packageOf(a.path) === chunk ? undefined : { path: a.path, external: true }));
    },
  };
  // As ES modules first: the import statements esbuild writes say which names the chunk uses.
  const esm = await build({ ...common, format: 'esm', banner: {}, footer: {}, minifyWhitespace: false, minifySyntax: false, write: false, entryPoints: [entry], outdir: path.join(outdir, 'chunks'), plugins: [others] });
  const names = {};
  for (const m of esm.outputFiles[0].text.matchAll(/^import\s*(\*\s*as\s*\w+|\{[^}]*\})\s*from\s*"(@tsbuild\/[\w-]+)";?$/gm)) {
    if (m[1].startsWith('*')) throw new Error(`bundle: chunk ${chunk} imports all of ${m[2]}: name what it uses`);
    const set = (names[m[2]] ??= new Set());
    for (const spec of m[1].slice(1, -1).split(',')) if (spec.trim() !== '') set.add(spec.trim().split(/\s+as\s+/)[0]);
  }
  if (Object.keys(names).length === 0) throw new Error(`bundle: found no imports of other packages in chunk ${chunk}`);
  // An import() of another package would get only the names shared for the static imports.
  if (/\bimport\(\s*"@tsbuild\//.test(esm.outputFiles[0].text)) throw new Error(`bundle: chunk ${chunk} has an import() of another package: import it statically`);
  chunkImports[chunk] = names;
  await build({ ...common, entryPoints: { [chunk]: entry }, outdir: path.join(outdir, 'chunks'), outExtension: { '.js': '.cjs' }, plugins: [others] });
}

// Which chunks each command imports statically (they stay in its file), from a first build with
// every chunk external: `var import_x = require("@tsbuild/x")` is a static import, an import()
// is `() => __toESM(require("@tsbuild/x"))`.
const probe = await build({
  ...common,
  minifyWhitespace: false,
  minifySyntax: false,
  write: false,
  entryPoints: Object.fromEntries(commands.map((c) => [c, path.join(dist, 'commands', `${c}.js`)])),
  outdir: path.join(outdir, 'commands'),
  plugins: [externalChunks(CHUNKS)],
});
const groups = new Map();
for (const out of probe.outputFiles) {
  const id = path.basename(out.path, '.js');
  const inline = CHUNKS.filter((c) => new RegExp(`=\\s*(?:__toESM\\()?require\\("@tsbuild/${c}"\\)`).test(out.text));
  const external = CHUNKS.filter((c) => !inline.includes(c) && out.text.includes(`require("@tsbuild/${c}")`));
  const key = external.join(',');
  if (!groups.has(key)) groups.set(key, { external, commands: [] });
  groups.get(key).commands.push(id);
}
// A command's file: the command, and then the names its chunks import from the packages, shared
// with them. Getters: the bindings are read when a chunk reads them, as an import would.
const commandEntries = (external) => ({
  name: 'command-entries',
  setup(b) {
    b.onResolve({ filter: /^tsbuild-command-entry:/ }, (a) => ({ path: a.path.slice('tsbuild-command-entry:'.length), namespace: 'tsbuild-command-entry' }));
    b.onLoad({ filter: /.*/, namespace: 'tsbuild-command-entry' }, (a) => {
      const file = JSON.stringify(path.join(dist, 'commands', `${a.path}.js`));
      const shared = new Map();
      for (const c of external) for (const [pkg, names] of Object.entries(chunkImports[c])) for (const n of names) (shared.get(pkg) ?? shared.set(pkg, new Set()).get(pkg)).add(n);
      const lines = [`export * from ${file};`, `export { default } from ${file};`];
      const objects = [];
      let i = 0;
      for (const [pkg, names] of shared) {
        const locals = [...names].map((n) => [n, `s${i++}`]);
        lines.push(`import { ${locals.map(([n, l]) => `${n} as ${l}`).join(', ')} } from ${JSON.stringify(pkg)};`);
        objects.push(`${JSON.stringify(pkg)}: { ${locals.map(([n, l]) => `get ${n}() { return ${l}; }`).join(', ')} }`);
      }
      if (objects.length > 0) lines.push(`require('../load-command.cjs').share({ ${objects.join(', ')} });`);
      return { contents: lines.join('\n'), loader: 'js', resolveDir: path.join(dist, 'commands') };
    });
    b.onResolve({ filter: /^\.\.\/load-command\.cjs$/ }, (a) => ({ path: a.path, external: true }));
  },
});
for (const { external, commands: ids } of groups.values()) {
  await build({
    ...common,
    entryPoints: Object.fromEntries(ids.map((c) => [c, `tsbuild-command-entry:${c}`])),
    outdir: path.join(outdir, 'commands'),
    outExtension: { '.js': '.cjs' },
    plugins: [externalChunks(external), commandEntries(external)],
  });
}

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
await build({
  ...common,
  define: { ...common.define, TSBUILD_LINUX_ADDON: JSON.stringify(path.relative(outdir, linuxAddon)) },
  entryPoints: [path.join(dist, 'main.js')],
  outfile: path.join(outdir, 'main.cjs'),
  plugins: [commandFiles, commandSummaries],
});
copyFileSync(path.join(root, 'scripts', 'load-command.cjs'), path.join(outdir, 'load-command.cjs'));

// load-command.cjs reads the files as latin1: esbuild escapes what is not ASCII in strings, but
// not in a regular expression literal. Refuse such a file here, not as a wrong regex at run time.
for (const dir of [outdir, path.join(outdir, 'commands'), path.join(outdir, 'chunks')]) {
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.cjs') && n !== 'load-command.cjs')) {
    const at = readFileSync(path.join(dir, f)).findIndex((b) => b > 0x7f);
    if (at !== -1) throw new Error(`bundle: ${path.relative(root, path.join(dir, f))} has a byte that is not ASCII at offset ${at}: write it as an escape in the source`);
  }
}
