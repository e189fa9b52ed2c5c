import { Args, Flags } from '../cli-kit.js';
import { WorkingContainer } from '@tsbuild/container';
import { InvalidArgumentError } from '@tsbuild/oci';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Rm extends BaseCommand<typeof Rm> {
  static override summary = 'Remove working containers (their mount, snapshot and record)';
  static override strict = false;
  static override examples = ['<%= config.bin %> rm $ctr', '<%= config.bin %> rm --all'];
  static override args = { container: Args.string({ description: 'working container name or ID (more may follow)' }) };
  static override flags = { all: Flags.boolean({ char: 'a', description: 'remove every working container' }) };

  async run(): Promise<void> {
    const { argv } = await this.parse(Rm);
    const names = argv as string[];
    if (names.length === 0 && !this.flags.all) throw new InvalidArgumentError('rm: name a container, or give --all');
    if (names.length > 0 && this.flags.all) throw new InvalidArgumentError('rm: either containers or --all, not both');
    const env = await this.containerEnv();
    const targets = this.flags.all ? (await WorkingContainer.list(env)).map((r) => r.id) : names;
    // Every name is checked first: a typo removes nothing.
    const wcs = await Promise.all(targets.map((n) => WorkingContainer.open(env, n)));
    for (const wc of wcs) {
      await wc.remove();
      print(`${wc.id}\n`);
    }
  }
}
