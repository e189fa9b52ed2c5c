import { Args } from '../cli-kit.js';
import { BaseCommand } from '../base-command.js';

export default class Tag extends BaseCommand<typeof Tag> {
  static override summary = 'Add names to an image';
  static override strict = false;
  static override args = {
    source: Args.string({ description: 'image name or ID', required: true }),
    target: Args.string({ description: 'new name (more may follow)', required: true }),
  };

  async run(): Promise<void> {
    const { argv } = await this.parse(Tag);
    const [source, ...targets] = argv as string[];
    const store = await this.store();
    const { descriptor } = await store.resolve(source!);
    for (const t of targets) await store.setName(t, descriptor);
  }
}
