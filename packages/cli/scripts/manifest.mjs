#!/usr/bin/env node
// Writes oclif.manifest.json after a build: with it oclif loads only the command being run,
// instead of importing every command (and so every package) to find it. Measured: `tsbuild
// images` spent most of its ~330 ms start-up importing modules it did not use.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'oclif.manifest.json');
writeFileSync(out, JSON.stringify({ commands: {}, version: '0.0.0' })); // ignored: version mismatch
const config = await Config.load({ root, devPlugins: false, userPlugins: false });
const plugin = [...config.plugins.values()].find((p) => p.root === root);
if (!plugin) throw new Error(`no oclif plugin at ${root}`);
// The plugin computed its manifest by loading every command (the stale file above did not match).
writeFileSync(out, `${JSON.stringify(plugin.manifest)}\n`);
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`);
