import { Args, Flags } from '../cli-kit.js';
import { platformFlag } from '../platform-flag.js';
import { WorkingContainer } from '@tsbuild/container';
import { BaseCommand } from '../base-command.js';
import { registryClient, registryFlags } from '../registry-flags.js';
import { runtimeFlags, runtimeOptions } from '../run-flags.js';
import { print } from '../print.js';

export default class From extends BaseCommand<typeof From> {
  static override summary = 'Create a working container from an image (or scratch) and print its name';
  static override description =
    'As `buildah from`: the container is the image plus a writable snapshot and a config to edit, changed by ' +
    '`tsbuild run`, `copy`, `add`, `config` and `mount`, and turned into an image by `tsbuild commit`. Its name is ' +
    '<image>-working-container (then -1, -2 …) unless --name gives one. Container flags given here apply to every `run`.';
  static override examples = ['ctr=$(<%= config.bin %> from busybox)', '<%= config.bin %> from --name app-build scratch', '<%= config.bin %> from --pull=always --tls-verify=false 127.0.0.1:5000/base:1'];
  static override args = { image: Args.string({ description: 'image name or ID, or scratch', required: true }) };
  static override flags = {
    name: Flags.string({ description: 'name of the working container' }),
    pull: Flags.string({ description: 'pull the image: missing (when not in the store), always, never; true = missing, false = never', default: 'missing' }),
    quiet: Flags.boolean({ char: 'q', description: 'print nothing but the container name' }),
    platform: Flags.string({ description: 'os/arch[/variant] whose image to take from a manifest list, or to pull (default: the image as stored)' }),
    ...registryFlags,
    ...runtimeFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(From);
    const f = this.flags;
    const pull = ({ true: 'missing', false: 'never', missing: 'missing', always: 'always', never: 'never', ifmissing: 'missing' } as const)[f.pull as 'missing'];
    if (pull === undefined) throw new (await import('@tsbuild/oci')).InvalidArgumentError(`--pull=${f.pull}: want missing, always or never`);
    const { parsePlatform } = await import('@tsbuild/oci');
    const platform = f.platform !== undefined ? platformFlag(parsePlatform, f.platform) : undefined;
    const env = await this.containerEnv(() => registryClient(f));
    try {
      const runtime = await runtimeOptions(f);
      const wc = await WorkingContainer.from(env, args.image, { pull, ...(platform ? { platform } : {}), ...(f.name !== undefined ? { name: f.name } : {}), ...(Object.keys(runtime).length > 0 ? { runtime } : {}) });
      print(`${wc.name}\n`);
    } finally {
      await env.close();
    }
  }
}
