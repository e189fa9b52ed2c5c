import { Args } from '../cli-kit.js';
import { BaseCommand, normalisedName } from '../base-command.js';
import { print } from '../print.js';

export default class Rmi extends BaseCommand<typeof Rmi> {
  static override summary = 'Remove images, or one of their names (the data goes with the next prune)';
  static override description =
    'A name removes that name; an image ID removes every name of that image. Blobs and snapshots that no image references any more are freed by `tsbuild prune`.';
  static override strict = false;
  static override args = { image: Args.string({ description: 'image name or ID (more may follow)', required: true }) };

  async run(): Promise<void> {
    const { argv } = await this.parse(Rmi);
    const store = await this.store();
    for (const image of argv as string[]) {
      const { descriptor, names } = await store.resolve(image);
      const asName = normalisedName(image);
      if (asName !== undefined && names.includes(asName) && names.length > 1) {
        // One of several names: only that name goes, the image stays.
        await store.removeName(asName);
        print(`Untagged: ${asName}\n`);
        continue;
      }
      const removed = await store.removeImage(descriptor.digest);
      for (const n of removed) print(`Untagged: ${n}\n`);
      print(`Deleted: ${descriptor.digest}\n`);
    }
  }
}
