import { Flags } from '../cli-kit.js';
import type { SnapshotInfo } from '@tsbuild/snapshotter';
import { BaseCommand, humanSize, table } from '../base-command.js';
import { print } from '../print.js';

export default class Snapshots extends BaseCommand<typeof Snapshots> {
  static override summary = 'List snapshots (for debugging a store)';
  static override flags = { format: Flags.string({ options: ['table', 'json'], default: 'table', description: 'output format' }) };

  async run(): Promise<void> {
    const s = await this.snapshotter();
    const infos: (SnapshotInfo & { size: number })[] = [];
    const all: SnapshotInfo[] = [];
    await s.walk((i) => {
      all.push(i);
    });
    for (const i of all) infos.push({ ...i, size: (await s.usage(i.name)).size });
    if (this.flags.format === 'json') {
      print(`${JSON.stringify(infos, null, 2)}\n`);
      return;
    }
    const rows = [['NAME', 'KIND', 'PARENT', 'SIZE']];
    for (const i of infos) rows.push([i.name, i.kind, i.parent ?? '', humanSize(i.size)]);
    print(table(rows));
  }
}
