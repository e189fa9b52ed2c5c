import { Args } from '@oclif/core';
import { formatReference, parseReference } from '@tsbuild/oci';
import { BaseCommand } from '../base-command.js';

export default class Rmi extends BaseCommand<typeof Rmi> {
  static override summary = 'Remove image names (the data goes with the next prune)';
  static override description =
    'A name removes that name; an image ID removes every name of that image. Blobs and snapshots that no image references any more are freed by `tsbuild prune`.';
  static override strict = false;
  static override args = { image: Args.string({ description: 'image name or ID (more may follow)', required: true }) };

  async run(): Promise<void> {
    const { argv } = await this.parse(Rmi);
    const store = await this.store();
    for (const image of argv as string[]) {
      const { descriptor, names } = await store.resolve(image);
      const asName = normalised(image);
      const remove = asName !== undefined && names.includes(asName) ? [asName] : names;
      for (const n of remove) await store.removeName(n);
      process.stdout.write(`Untagged: ${remove.join(', ')}\n`);
      if (remove.length === names.length) process.stdout.write(`Deleted: ${descriptor.digest}\n`);
    }
  }
}

function normalised(image: string): string | undefined {
  try {
    return formatReference(parseReference(image));
  } catch {
    return undefined; // an ID, not a name
  }
}
