import { Args, Flags } from '../cli-kit.js';
import { imageHistory, openImageArg } from '@tsbuild/image';
import { shortId } from '@tsbuild/oci';
import { BaseCommand, humanAge, humanSize, table } from '../base-command.js';
import type { RegistryClient } from '@tsbuild/registry-client';
import { registryClient, registryFlags } from '../registry-flags.js';
import { print } from '../print.js';

export default class History extends BaseCommand<typeof History> {
  static override summary = 'Show the history of an image, newest step first';
  static override examples = ['<%= config.bin %> history app:1', '<%= config.bin %> history --no-trunc --format json docker://127.0.0.1:5000/app:1 --tls-verify=false'];
  static override args = { image: Args.string({ description: 'image name or ID, or docker://REF to read from a registry', required: true }) };
  static override flags = {
    format: Flags.string({ description: 'output format', options: ['table', 'json'], default: 'table' }),
    'no-trunc': Flags.boolean({ description: 'do not truncate the CREATED BY column or layer digests' }),
    platform: Flags.string({ description: 'os/arch[/variant] of a multi-platform remote image' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(History);
    const f = this.flags;
    let client: RegistryClient | undefined;
    const getClient = async () => (client ??= await registryClient(f));
    try {
      const { image } = await openImageArg(args.image, { store: () => this.store(), client: getClient, ...(f.platform ? { platform: f.platform } : {}) });
      const rows = await imageHistory(image);
      if (f.format === 'json') {
        print(`${JSON.stringify(rows.map((r) => ({ created: r.created ?? null, createdBy: r.createdBy, size: r.size, emptyLayer: r.emptyLayer, comment: r.comment ?? null, layer: r.layer ?? null })), null, 2)}\n`);
        return;
      }
      const out = [['LAYER', 'CREATED', 'CREATED BY', 'SIZE', 'EMPTY', 'COMMENT']];
      for (const r of rows) {
        const by = r.createdBy.replace(/\s+/g, ' ');
        out.push([
          r.layer === undefined ? '<missing>' : f['no-trunc'] ? r.layer : shortId(r.layer),
          humanAge(r.created),
          f['no-trunc'] || by.length <= 45 ? by : `${by.slice(0, 44)}…`,
          humanSize(r.size),
          r.emptyLayer ? 'true' : 'false',
          r.comment ?? '',
        ]);
      }
      print(table(out));
    } finally {
      await client?.close();
    }
  }
}
