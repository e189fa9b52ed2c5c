import { Args } from '../cli-kit.js';
import { WorkingContainer } from '@tsbuild/container';
import { BaseCommand } from '../base-command.js';

export default class Rename extends BaseCommand<typeof Rename> {
  static override summary = 'Rename a working container';
  static override args = {
    container: Args.string({ description: 'working container name or ID', required: true }),
    name: Args.string({ description: 'new name', required: true }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Rename);
    const wc = await WorkingContainer.open(await this.containerEnv(), args.container);
    await wc.rename(args.name);
  }
}
