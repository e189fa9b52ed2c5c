import type { Command } from './cli-kit.js';

/**
 * Each command's one-line summary, for `tsbuild --help`: read here from the command classes, which
 * loads every command. The bundle replaces this module with the list scripts/bundle.mjs wrote from
 * those same classes, so the bundled `--help` loads none of the command files.
 */
export function commandSummaries(ids: string[], load: (id: string) => Promise<typeof Command>): Promise<[string, string][]> {
  return Promise.all(ids.map(async (id) => [id, (await load(id)).summary ?? ''] as [string, string]));
}
