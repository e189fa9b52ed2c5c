import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { NotFoundError } from '@tsbuild/oci';
import { BuildRecords, loggedSteps } from '@tsbuild/builder';
import { Args, Flags } from '../cli-kit.js';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Logs extends BaseCommand<typeof Logs> {
  static override summary = "Print a build's complete step output (every RUN, as the terminal showed it)";
  static override examples = ['<%= config.bin %> logs', '<%= config.bin %> logs last --step 4', '<%= config.bin %> logs 3f9c2a1b7d04'];
  static override args = { build: Args.string({ description: 'build ID (or a unique prefix), or last', default: 'last' }) };
  static override flags = {
    step: Flags.integer({ description: 'only this step (its number in the build output), without a header', min: 1 }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Logs);
    const record = await new BuildRecords((await this.store()).root).open(args.build);
    const steps = await loggedSteps(`${record.dir}/logs`);
    const want = this.flags.step;
    if (want !== undefined) {
      const s = steps.find((x) => x.step === want);
      if (s === undefined) throw new NotFoundError(`build ${record.id}: step ${want} has no log (logged steps: ${steps.map((x) => x.step).join(', ') || 'none'})`);
      await pipeline(createReadStream(s.file), process.stdout, { end: false });
      return;
    }
    for (const s of steps) {
      print(`STEP ${s.step}: ${s.instruction}\n`);
      await pipeline(createReadStream(s.file), process.stdout, { end: false });
    }
  }
}
