import { Args, Flags } from '../cli-kit.js';
import { listMounts, mountImage } from '@tsbuild/image';
import { shortId } from '@tsbuild/oci';
import { BaseCommand, table } from '../base-command.js';

export default class Mount extends BaseCommand<typeof Mount> {
  static override summary = 'Mount an image\'s flattened filesystem read-only and print the mount point';
  static override description = 'The mount stays until `tsbuild umount IMAGE`, like `buildah mount`. Without IMAGE, lists the mounts.';
  static override examples = ['<%= config.bin %> mount app:1', 'ls $(<%= config.bin %> mount app:1)/etc'];
  static override args = { image: Args.string({ description: 'image name or ID' }) };
  static override flags = {
    format: Flags.string({ description: 'output format of the listing', options: ['table', 'json'], default: 'table' }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Mount);
    const s = await this.snapshotter();
    if (args.image === undefined) {
      const mounts = await listMounts(s);
      if (this.flags.format === 'json') {
        process.stdout.write(`${JSON.stringify(mounts, null, 2)}\n`);
        return;
      }
      const rows = [['IMAGE ID', 'MOUNT POINT', 'MOUNTED']];
      for (const m of mounts) rows.push([m.imageId ? shortId(m.imageId as `sha256:${string}`) : '', m.path, String(m.mounted)]);
      process.stdout.write(table(rows));
      return;
    }
    const store = await this.store();
    const { descriptor } = await store.resolve(args.image);
    const m = await mountImage(store, s, store.image(descriptor));
    process.stdout.write(`${m.path}\n`);
  }
}
