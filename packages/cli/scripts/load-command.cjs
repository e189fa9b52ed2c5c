'use strict';
// Copied into bundle/ by bundle.mjs. Loads bundle/commands/<id>.cjs and the chunks they require
// (bundle/chunks/<name>.cjs), and bin/run.cjs loads bundle/main.cjs, as require() would, with
// V8's code cache: the functions a command compiled when it last ran are kept in a cache file
// next to the script and reused, instead of parsed and compiled again (node 20 has no
// module.enableCompileCache). A chunk has a cache per command (<name>.cjs.<id>.cache): `build`
// and `run` compile different functions of the runtime. V8 refuses a cache made by another V8 or
// with other flags, but it knows the source only by its length: each cache starts with the
// identity of the file it was made from (inode, size, mtime), and one made from another file is
// not used. When there is no usable cache, one
// is written when the command ends (temp + rename, so a concurrent run never reads half of one),
// by a run of that command only (`tsbuild --help` loads every command and runs none: its caches
// would hold next to nothing). Where bundle/ is read-only, commands simply compile every time.
const { closeSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

/** Scripts loaded without a usable cache, to save one for when the process exits. */
const unsaved = [];
/** What the command's file shares of the workspace packages with the chunks (bundle.mjs), by package. */
const shared = new Map();
/** The chunks loaded so far (bundle/chunks/<name>.cjs), by package: their exports. */
const chunks = new Map();
/** The command whose file is loaded: the chunks' code caches are its own (see the top of this file). */
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
 * One buffer for every file this module reads, the sources and their caches: each read is done
 * with it before the next (V8 reads cached data while it compiles, and keeps none of it), and
 * memory already touched costs no page fault again, where a fresh buffer of a few hundred KB is
 * ~50–100 of them (~14 µs each in this VM). Grown to the largest file read.
 */
let scratch = Buffer.alloc(0);

/** The whole file at `file` (null where it cannot be opened and `optional`), in `scratch`: valid until the next read. */
function readWhole(file, optional) {
  let fd;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if (optional) return null;
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (scratch.length < st.size) scratch = Buffer.allocUnsafeSlow(Math.max(st.size, 2 * scratch.length, 512 * 1024));
    let n = 0;
    while (n < st.size) {
      const r = readSync(fd, scratch, n, st.size - n, n);
      if (r === 0) break;
      n += r;
    }
    return { data: scratch.subarray(0, n), st };
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads `file` (a CommonJS module written as its wrapper function) with its code cache
 * (`cacheFile`; null: none); `save`: write one at exit if it had none.
 */
function loadScript(file, save, cacheFile = `${file}.cache`) {
  // The text as latin1: the bundles are ASCII (bundle.mjs checks it), and a UTF-8 read of a few
  // hundred KB grows its buffer and decodes it, ~60 more page faults.
  const { data, st } = readWhole(file, false);
  const source = data.latin1Slice(0, data.length);
  const identity = cacheIdentity(st);
  let cachedData;
  const c = cacheFile === null ? null : readWhole(cacheFile, true);
  if (c !== null && c.data.subarray(0, identity.length).equals(identity)) cachedData = c.data.subarray(identity.length);
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

/**
 * The line a cache starts with, padded to a multiple of 8 bytes: V8 copies cached data that is
 * not 8-byte aligned before it reads it (~200 KB for a command, ~50 page faults), and the data
 * starts right after this line in a buffer that is.
 */
function cacheIdentity(st) {
  const line = `tsbuild code cache ${st.ino} ${st.size} ${st.mtimeMs}`;
  return Buffer.from(`${line.padEnd(Math.ceil((line.length + 1) / 8) * 8 - 1)}\n`);
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
