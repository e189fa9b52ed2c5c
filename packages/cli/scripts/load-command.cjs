'use strict';
// Copied into bundle/ by bundle.mjs. Loads bundle/commands/<id>.cjs and the chunks they require
// (bundle/chunks/<name>.cjs), and bin/run.cjs loads bundle/main.cjs, as require() would, with
// V8's code cache: the functions a command compiled when it last ran are kept in a cache file
// next to the script and reused, instead of parsed and compiled again (node 20 has no
// module.enableCompileCache). A chunk has a cache per command (<name>.cjs.<id>.cache): `from`
// and `run` compile different functions of the runtime. V8 refuses a cache made by another V8 or with other flags, but it knows the source
// only by its length: each cache starts with the identity of the file it was made from (inode,
// size, mtime), and one made from another file is not used. When there is no usable cache, one
// is written when the command ends (temp + rename, so a concurrent run never reads half of one),
// by a run of that command only (`tsbuild --help` loads every command and runs none: its caches
// would hold next to nothing). Where bundle/ is read-only, commands simply compile every time.
const { closeSync, fstatSync, openSync, readFileSync, readSync, renameSync, unlinkSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

/** Scripts loaded without a usable cache, to save one for when the process exits. */
const unsaved = [];
/** What the command's file shares of the workspace packages with the chunks (bundle.mjs), by package. */
const shared = new Map();
/** The chunks loaded so far (bundle/chunks/<name>.cjs), by package: their exports. */
const chunks = new Map();
/** The command whose file is loaded: the chunks' code caches are its own (`from` and `run` compile different functions of the runtime). */
let owner = { id: undefined, save: false };

module.exports = function loadCommand(id) {
  owner = { id, save: process.argv[2] === id };
  return loadScript(path.join(__dirname, 'commands', `${id}.cjs`), owner.save);
};

/** Called by a command's file as it loads: the bindings of the packages its chunks import. */
module.exports.share = function share(packages) {
  for (const [name, bindings] of Object.entries(packages)) shared.set(name, bindings);
};

/** `@tsbuild/<name>` required by a bundle file: what the command shares of it, or its chunk, loaded on the first require. */
function workspacePackage(id) {
  const bindings = shared.get(id) ?? chunks.get(id);
  if (bindings !== undefined) return bindings;
  const file = path.join(__dirname, 'chunks', `${id.slice('@tsbuild/'.length)}.cjs`);
  const exports = loadScript(file, owner.save, owner.id === undefined ? null : `${file}.${owner.id}.cache`);
  chunks.set(id, exports);
  return exports;
}

/**
 * The file's text: read as latin1 into a buffer of the file's size. The bundles are ASCII
 * (esbuild escapes the rest), and a UTF-8 read of a few hundred KB grows its buffer and decodes
 * it: ~60 more page faults, each ~14 µs in this VM.
 */
function readSource(file) {
  const fd = openSync(file, 'r');
  try {
    const st = fstatSync(fd);
    const buf = Buffer.allocUnsafeSlow(st.size);
    let n = 0;
    while (n < st.size) {
      const r = readSync(fd, buf, n, st.size - n, n);
      if (r === 0) break;
      n += r;
    }
    return { source: buf.latin1Slice(0, n), st };
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads `file` (a CommonJS module written as its wrapper function) with its code cache
 * (`cacheFile`; null: none); `save`: write one at exit if it had none.
 */
function loadScript(file, save, cacheFile = `${file}.cache`) {
  const { source, st } = readSource(file);
  const identity = Buffer.from(`tsbuild code cache ${st.ino} ${st.size} ${st.mtimeMs}\n`);
  let cachedData;
  try {
    const c = cacheFile === null ? undefined : readFileSync(cacheFile);
    if (c !== undefined && c.subarray(0, identity.length).equals(identity)) cachedData = c.subarray(identity.length);
  } catch {
    cachedData = undefined;
  }
  // The file is the wrapper function itself (bundle.mjs writes it so): compiled as it is.
  const script = new vm.Script(source, {
    filename: file,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  if ((cachedData === undefined || script.cachedDataRejected) && save && cacheFile !== null) {
    if (unsaved.length === 0) process.once('exit', () => unsaved.forEach(saveCache));
    unsaved.push({ script, cacheFile, identity });
  }
  const module = { exports: {} };
  script.runInThisContext()(module.exports, requireFrom(file), module, file, path.dirname(file));
  return module.exports;
}

/** require() for a bundle file: node's, except for the workspace packages (bundle.mjs leaves only chunks' packages to it). */
function requireFrom(file) {
  const nodeRequire = createRequire(file);
  const req = (id) => (id.startsWith('@tsbuild/') ? workspacePackage(id) : nodeRequire(id));
  req.resolve = nodeRequire.resolve;
  req.cache = nodeRequire.cache;
  return req;
}

module.exports.loadScript = loadScript;

function saveCache({ script, cacheFile, identity }) {
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, Buffer.concat([identity, script.createCachedData()]));
    renameSync(tmp, cacheFile);
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing was written
    }
  }
}
