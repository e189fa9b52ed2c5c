import { Args, Flags } from '../cli-kit.js';
import { exportRootfs, openImageArg } from '@tsbuild/image';
import { writeOutputFile } from '@tsbuild/store';
import { BaseCommand } from '../base-command.js';
import type { RegistryClient } from '@tsbuild/registry-client';
import { registryClient, registryFlags } from '../registry-flags.js';

export default class Export extends BaseCommand<typeof Export> {
  static override summary = 'Write an image\'s flattened filesystem as a tar (no whiteouts)';
  static override examples = ['<%= config.bin %> export app:1 -o rootfs.tar', '<%= config.bin %> export app:1 | tar -t'];
  static override args = { image: Args.string({ description: 'image name or ID, or docker://REF to read from a registry', required: true }) };
  static override flags = {
    output: Flags.string({ char: 'o', description: 'tar file to write (default: stdout)' }),
    platform: Flags.string({ description: 'os/arch[/variant] of a multi-platform remote image' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Export);
    const f = this.flags;
    if (f.output === undefined && process.stdout.isTTY) this.error('refusing to write a tar to a terminal: use -o FILE or redirect stdout', { exit: 2 });
    let client: RegistryClient | undefined;
    const getClient = async () => (client ??= await registryClient(f));
    try {
      const { image } = await openImageArg(args.image, { store: () => this.store(), client: getClient, ...(f.platform ? { platform: f.platform } : {}) });
      if (f.output === undefined) {
        await exportRootfs(image, process.stdout);
        return;
      }
      // Written beside the target and renamed at the end, so a failed export leaves no partial tar.
      await writeOutputFile(f.output, (file) => exportRootfs(image, file).then(() => undefined));
    } finally {
      await client?.close();
    }
  }
}
