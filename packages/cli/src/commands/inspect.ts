import { Args } from '../cli-kit.js';
import { BaseCommand } from '../base-command.js';

export default class Inspect extends BaseCommand<typeof Inspect> {
  static override summary = 'Show an image\'s manifest and config as JSON';
  static override args = { image: Args.string({ description: 'image name or ID', required: true }) };

  async run(): Promise<void> {
    const { args } = await this.parse(Inspect);
    const store = await this.store();
    const { descriptor, names } = await store.resolve(args.image);
    const img = store.image(descriptor);
    const [manifest, config, configDesc] = await Promise.all([img.manifest(), img.config(), img.configDescriptor()]);
    const out = { Id: configDesc.digest, Names: names, Digest: descriptor.digest, ManifestDescriptor: descriptor, Manifest: manifest, Config: config };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  }
}
