import { Args, Flags } from '../cli-kit.js';
import { WorkingContainer } from '@tsbuild/container';
import { InvalidArgumentError, digestHex } from '@tsbuild/oci';
import { writeFile } from 'node:fs/promises';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Commit extends BaseCommand<typeof Commit> {
  static override summary = 'Make an image of a working container and print its ID';
  static override description =
    'As `buildah commit`: the container\'s base image plus one new layer with everything changed since `from` (a second ' +
    'commit\'s layer holds all changes so far), the config as `tsbuild config` left it, and a history entry for the layer.';
  static override examples = ['<%= config.bin %> commit $ctr app:1', '<%= config.bin %> commit --rm --squash --timestamp 0 $ctr app:repro'];
  static override args = {
    container: Args.string({ description: 'working container name or ID', required: true }),
    image: Args.string({ description: 'name of the new image (default: unnamed)' }),
  };
  static override flags = {
    format: Flags.string({ char: 'f', description: 'image format', options: ['oci', 'docker'], default: 'oci' }),
    squash: Flags.boolean({ description: 'one layer with the whole filesystem' }),
    rm: Flags.boolean({ description: 'remove the container after committing' }),
    timestamp: Flags.integer({ description: 'created time (seconds since the epoch) of the image, its history and every file in the new layer' }),
    iidfile: Flags.string({ description: 'write the image ID to this file' }),
    quiet: Flags.boolean({ char: 'q', description: 'print only the image ID' }),
    'omit-history': Flags.boolean({ description: 'write no history into the image' }),
    'disable-compression': Flags.boolean({ char: 'D', description: 'store layers as plain tar (--disable-compression=false: gzip)', allowNo: true, default: true }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Commit);
    const f = this.flags;
    if (f.timestamp !== undefined && (f.timestamp < 0 || f.timestamp > 253402300799)) throw new InvalidArgumentError(`--timestamp ${f.timestamp}: want seconds since the epoch, up to year 9999`);
    const env = await this.containerEnv();
    const wc = await WorkingContainer.open(env, args.container);
    const r = await wc.commit({
      format: f.format as 'oci' | 'docker',
      ...(args.image !== undefined ? { name: args.image } : {}),
      ...(f.squash ? { squash: true } : {}),
      ...(f.rm ? { rm: true } : {}),
      ...(f.timestamp !== undefined ? { timestamp: f.timestamp } : {}),
      ...(f['omit-history'] ? { omitHistory: true } : {}),
      disableCompression: f['disable-compression'],
    });
    if (f.iidfile) await writeFile(f.iidfile, r.id);
    if (!f.quiet) process.stderr.write(`Writing manifest to image destination\n`);
    print(`${digestHex(r.id as `sha256:${string}`)}\n`);
  }
}
