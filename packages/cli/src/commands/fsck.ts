import { FailedPreconditionError } from '@tsbuild/oci';
import { BaseCommand, humanSize } from '../base-command.js';

export default class Fsck extends BaseCommand<typeof Fsck> {
  static override summary = 'Verify the store: re-hash every blob and check every reference';
  static override description = 'Exits with status 1 when anything is corrupt or missing, listing each problem.';

  async run(): Promise<void> {
    const report = await (await this.store()).fsck();
    for (const p of report.problems) process.stdout.write(`${p.kind}: ${p.message}\n`);
    process.stdout.write(`checked ${report.blobsChecked} blobs (${humanSize(report.bytesChecked)}): ${report.problems.length} problem(s)\n`);
    if (report.problems.length > 0) throw new FailedPreconditionError(`store ${this.flags.root} is corrupt: ${report.problems.length} problem(s)`);
  }
}
