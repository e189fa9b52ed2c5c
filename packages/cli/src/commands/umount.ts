import { Args } from '../cli-kit.js';
import { unmountImage } from '@tsbuild/image';
import { BaseCommand } from '../base-command.js';

export default class Umount extends BaseCommand<typeof Umount> {
  static override summary = 'Unmount an image mounted with `tsbuild mount` and remove its view snapshot';
  static override examples = ['<%= config.bin %> umount app:1'];
  static override args = { image: Args.string({ description: 'image name or ID', required: true }) };

  async run(): Promise<void> {
    const { args } = await this.parse(Umount);
    const store = await this.store();
    const { descriptor } = await store.resolve(args.image);
    const m = await unmountImage(store, await this.snapshotter(), store.image(descriptor));
    process.stdout.write(`${m.path}\n`);
  }
}
