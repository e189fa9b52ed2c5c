#!/usr/bin/env node
import { flush, handle, run } from '@oclif/core';

try {
  await run(process.argv.slice(2), import.meta.url);
  await flush();
} catch (err) {
  // An unknown command is a usage error (exit 2), like a bad flag or argument.
  if (err?.oclif && /^command .* not found$/.test(err.message)) err.oclif.exit = 2;
  await handle(err);
}
