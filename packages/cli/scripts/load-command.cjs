'use strict';
// Copied into bundle/ by bundle.mjs. Loads bundle/commands/<id>.cjs, and bin/run.cjs loads
// bundle/main.cjs, as require() would, with
// V8's code cache: the functions a command compiled when it last ran are kept in <id>.cjs.cache
// next to it and reused, instead of parsed and compiled again (node 20 has no
// module.enableCompileCache). V8 refuses a cache made by another V8 or with other flags, but it
// knows the source only by its length: each cache starts with the identity of the file it was
// made from (inode, size, mtime), and one made from another file is not used. When there is no
// usable cache, one is written when the command ends (temp + rename, so a concurrent run never
// reads half of one), by a run of that command only (`tsbuild --help` loads every command and
// runs none: its caches would hold next to nothing). Where bundle/ is read-only, commands simply
// compile every time.
const { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

/** Scripts loaded without a usable cache, to save one for when the process exits. */
const unsaved = [];

module.exports = function loadCommand(id) {
  return loadScript(path.join(__dirname, 'commands', `${id}.cjs`), process.argv[2] === id);
};

/** Loads `file` (a CommonJS module written as its wrapper function) with its code cache; `save`: write one at exit if it had none. */
function loadScript(file, save) {
  const cacheFile = `${file}.cache`;
  const source = readFileSync(file, 'utf8');
  const st = statSync(file);
  const identity = Buffer.from(`tsbuild code cache ${st.ino} ${st.size} ${st.mtimeMs}\n`);
  let cachedData;
  try {
    const c = readFileSync(cacheFile);
    if (c.subarray(0, identity.length).equals(identity)) cachedData = c.subarray(identity.length);
  } catch {
    cachedData = undefined;
  }
  // The file is the wrapper function itself (bundle.mjs writes it so): compiled as it is.
  const script = new vm.Script(source, {
    filename: file,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  if ((cachedData === undefined || script.cachedDataRejected) && save) {
    if (unsaved.length === 0) process.once('exit', () => unsaved.forEach(saveCache));
    unsaved.push({ script, cacheFile, identity });
  }
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(file), module, file, path.dirname(file));
  return module.exports;
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
