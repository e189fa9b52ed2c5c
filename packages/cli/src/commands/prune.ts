import { prune } from '@tsbuild/builder';
import { BaseCommand, humanSize } from '../base-command.js';

export default class Prune extends BaseCommand<typeof Prune> {
  static override summary = 'Remove blobs and snapshots that no image references';
  static override description = 'Takes the store\'s exclusive lock, so it waits for running builds to finish.';

  async run(): Promise<void> {
    const r = await prune(await this.store(), await this.snapshotter());
    for (const b of r.blobs) process.stdout.write(`deleted blob ${b.digest} (${humanSize(b.size)})\n`);
    for (const s of r.snapshots) process.stdout.write(`deleted snapshot ${s}\n`);
    process.stdout.write(`Total reclaimed space: ${humanSize(r.bytes)}\n`);
  }
}
