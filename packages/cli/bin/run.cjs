#!/usr/bin/env node
'use strict';
const path = require('node:path');
const { loadScript } = require('../bundle/load-command.cjs');

// The bundle (scripts/bundle.mjs) of dist/main.js. CommonJS, so node never starts its ES module
// loader (~3 ms) for a command; loaded with its code cache as the commands are (load-command.cjs).
const { main, internalError } = loadScript(path.join(__dirname, '..', 'bundle', 'main.cjs'), true);

// A warning is one line, like an error: "Warning: …" without node's "(node:PID)" prefix and its
// "--trace-warnings" hint.
process.removeAllListeners('warning');
process.on('warning', (w) => process.stderr.write(`Warning: ${w.message}\n`));

// Whatever escapes a command (a bug, a stream's 'error' nothing listened to, a promise nothing
// awaited) is still one line and status 1; TSBUILD_DEBUG=1 prints the stack trace as well.
// Without these, node prints the stack and the source line and exits with its own status.
let settled = false;
const crash = (e) => {
  settled = true;
  process.stderr.write(`Error: ${internalError(e)}\n`);
  process.exit(1);
};
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

// Once nothing is left to wait on, leave: node would otherwise free its environment and V8's heap
// first (~3–8 ms, more with a larger heap), which a process about to end does not need; the 'exit'
// listeners still run. A command whose work stalled (nothing left to wait on, its promise never
// settled) would end with node's status 0 and nothing said: say so in one line, and fail with status 1.
process.on('beforeExit', () => {
  if (settled) {
    // The last 'exit' listener, where the command loaded the libc addon: _exit(2) once the others
    // have run (packages/linux/src/ffi.ts says why). Not under node flags or NODE_OPTIONS (--cpu-prof,
    // --heap-prof, --inspect…) or NODE_V8_COVERAGE: node writes what they collect in its own exit.
    const exitNow = globalThis[Symbol.for('tsbuild.exit-now')];
    const diagnosed = process.execArgv.length > 0 || !!process.env.NODE_OPTIONS || !!process.env.NODE_V8_COVERAGE;
    if (typeof exitNow === 'function' && !diagnosed) process.on('exit', (code) => exitNow(code ?? 0));
    process.exit();
  }
  process.stderr.write('Error: internal error: the command stopped before it finished (a stream stalled)\n');
  process.exit(1);
});

main(process.argv.slice(2)).then((status) => {
  settled = true;
  if (status !== 0) {
    // Leave at once on failure: nothing the failed command started may keep the process alive.
    process.exitCode = status;
    process.stdout.write('', () => process.stderr.write('', () => process.exit(status)));
  }
}, crash);
