#!/usr/bin/env node
// The bundle (scripts/bundle.mjs) of dist/main.js: one file per command instead of ~400 modules.
import { main } from '../bundle/main.js';

const status = await main(process.argv.slice(2));
if (status !== 0) {
  // Leave at once on failure: nothing the failed command started may keep the process alive.
  process.exitCode = status;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(status)));
}
