import path from 'node:path';
import { FailedPreconditionError } from '@tsbuild/oci';
import { BaseCommand, humanSize } from '../base-command.js';
import { print } from '../print.js';

export default class Fsck extends BaseCommand<typeof Fsck> {
  static override summary = 'Verify the store: re-hash every blob and check every reference';
  static override description =
    'Checks that every blob hashes to its name, that every image\'s manifest and config are there and parse, and that the snapshot records (snapshots/metadata.json) agree with the snapshot directories. Exits with status 1 when anything is corrupt or missing, listing each problem.';

  async run(): Promise<void> {
    const store = await this.store();
    const report = await store.fsck();
    // Not through this.snapshotter(): opening refuses a corrupt metadata.json, which is a finding here.
    const { OverlaySnapshotter } = await import('@tsbuild/snapshotter');
    const snapshots = await OverlaySnapshotter.check(path.join(store.root, 'snapshots'));
    for (const p of report.problems) print(`${p.kind}: ${p.message}\n`);
    for (const p of snapshots) print(`snapshot: ${p}\n`);
    const problems = report.problems.length + snapshots.length;
    print(`checked ${report.blobsChecked} blobs (${humanSize(report.bytesChecked)}): ${problems} problem(s)\n`);
    if (problems > 0) throw new FailedPreconditionError(`store ${this.flags.root} is corrupt: ${problems} problem(s)`);
  }
}
