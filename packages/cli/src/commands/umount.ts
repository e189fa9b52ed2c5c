import { Args } from '../cli-kit.js';
import { unmountImage } from '@tsbuild/image';
import { BaseCommand } from '../base-command.js';
import { WorkingContainer } from '@tsbuild/container';
import { print } from '../print.js';

export default class Umount extends BaseCommand<typeof Umount> {
  static override summary = 'Unmount a working container or an image mounted with `tsbuild mount`';
  static override examples = ['<%= config.bin %> umount app:1'];
  static override args = { image: Args.string({ description: 'working container, or image name or ID', required: true }) };

  async run(): Promise<void> {
    const { args } = await this.parse(Umount);
    const wc = await WorkingContainer.find(await this.containerEnv(), args.image);
    if (wc) {
      await wc.unmount();
      print(`${wc.id}\n`);
      return;
    }
    const store = await this.store();
    const { descriptor } = await store.resolve(args.image);
    const m = await unmountImage(store, await this.snapshotter(), store.image(descriptor));
    print(`${m.path}\n`);
  }
}
