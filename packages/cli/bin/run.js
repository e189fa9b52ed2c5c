#!/usr/bin/env node
// The bundle (scripts/bundle.mjs) of dist/main.js: one file per command instead of ~400 modules.
import { main } from '../bundle/main.js';

// A warning is one line, like an error: "Warning: …" without node's "(node:PID)" prefix and its
// "--trace-warnings" hint.
process.removeAllListeners('warning');
process.on('warning', (w) => process.stderr.write(`Warning: ${w.message}\n`));

const status = await main(process.argv.slice(2));
if (status !== 0) {
  // Leave at once on failure: nothing the failed command started may keep the process alive.
  process.exitCode = status;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(status)));
}
