import { Args, Flags } from '../cli-kit.js';
import { InvalidArgumentError, digestHex, parsePlatform, parseReference } from '@tsbuild/oci';
import { pull, pullAllPlatforms } from '@tsbuild/registry-client';
import { BaseCommand } from '../base-command.js';
import { ProgressPrinter, registryClient, registryFlags } from '../registry-flags.js';
import { print } from '../print.js';

export default class Pull extends BaseCommand<typeof Pull> {
  static override summary = 'Pull an image from a registry into the store';
  static override examples = ['<%= config.bin %> pull 127.0.0.1:5000/team/app:1 --tls-verify=false', '<%= config.bin %> pull --platform linux/arm64 registry.example/app'];
  static override args = { image: Args.string({ description: 'reference: [host[:port]/]repo[:tag][@digest]', required: true }) };
  static override flags = {
    platform: Flags.string({ description: 'os/arch[/variant] to pick from a multi-platform image (default: this machine\'s)' }),
    'all-platforms': Flags.boolean({ description: 'pull every image of a multi-platform image, and keep its index under the name as a manifest list' }),
    quiet: Flags.boolean({ char: 'q', description: 'print only the image ID' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Pull);
    const f = this.flags;
    const progress = ProgressPrinter.forStream(f.quiet);
    const client = await registryClient(f, progress.onProgress);
    try {
      const ref = parseReference(args.image);
      // Reach the registry while the store opens.
      client.warmUp(ref.domain);
      const store = await this.store();
      if (f['all-platforms']) {
        if (f.platform !== undefined) throw new InvalidArgumentError('--platform and --all-platforms exclude each other');
        const r = await pullAllPlatforms(client, store, ref, { onProgress: progress.onProgress });
        progress.stop();
        if (!f.quiet) process.stderr.write(`Pulled ${r.name} (${r.descriptor.digest}, ${r.images.length} image(s))\n`);
        print(`${digestHex(r.descriptor.digest)}\n`);
        return;
      }
      const r = await pull(client, store, ref, { onProgress: progress.onProgress, ...(f.platform ? { platform: parsePlatform(f.platform) } : {}) });
      progress.stop();
      const id = (await store.image(r.descriptor).configDescriptor()).digest;
      if (!f.quiet) process.stderr.write(`Pulled ${r.name} (${r.descriptor.digest})\n`);
      print(`${digestHex(id)}\n`);
    } finally {
      progress.stop();
      await client.close();
    }
  }
}
