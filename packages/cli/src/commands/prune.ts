import { Flags } from '../cli-kit.js';
import { prune } from '@tsbuild/builder';
import { BaseCommand, humanSize } from '../base-command.js';
import { print } from '../print.js';

export default class Prune extends BaseCommand<typeof Prune> {
  static override summary = 'Remove untagged images, and blobs and snapshots that no image references';
  static override description =
    'Removes untagged (<none>) images first, as `docker image prune` does, unless --keep-untagged. ' +
    'Removes the failed steps kept for `tsbuild debug` too. ' +
    'Takes the store\'s exclusive lock, so it waits for running builds to finish.';
  static override flags = {
    'keep-untagged': Flags.boolean({ description: 'keep images that have no name' }),
    'build-cache': Flags.boolean({ description: 'also drop the build cache' }),
  };

  async run(): Promise<void> {
    const r = await prune(await this.store(), await this.snapshotter(), { keepUntagged: this.flags['keep-untagged'], buildCache: this.flags['build-cache'] });
    for (const id of r.keptStates) print(`deleted the failed step kept by build ${id}\n`);
    if (r.cacheEntries > 0) print(`dropped ${r.cacheEntries} build cache entries\n`);
    for (const i of r.images) print(`deleted image ${i}\n`);
    for (const b of r.blobs) print(`deleted blob ${b.digest} (${humanSize(b.size)})\n`);
    for (const s of r.snapshots) print(`deleted snapshot ${s}\n`);
    print(`Total reclaimed space: ${humanSize(r.bytes)}\n`);
  }
}
