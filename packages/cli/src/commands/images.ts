import { Flags } from '../cli-kit.js';
import { type ImageManifest, type ImageConfig, familiarReference, parseReference, shortId } from '@tsbuild/oci';
import { BaseCommand, humanAge, humanSize, table } from '../base-command.js';

export default class Images extends BaseCommand<typeof Images> {
  static override summary = 'List images in the local store';
  static override flags = {
    format: Flags.string({ description: 'output format', options: ['table', 'json'], default: 'table' }),
    'no-trunc': Flags.boolean({ description: 'show full image IDs' }),
  };

  async run(): Promise<void> {
    const store = await this.store();
    const rows = [];
    for (const rec of await store.listImages()) {
      const img = store.image(rec.descriptor);
      const [manifest, config, configDesc] = await Promise.all([img.manifest(), img.config(), img.configDescriptor()]);
      const ref = rec.name !== undefined ? parseReference(rec.name) : undefined;
      rows.push({
        name: rec.name ?? null,
        repository: ref ? familiarReference({ domain: ref.domain, path: ref.path }) : '<none>',
        tag: ref?.tag ?? '<none>',
        id: configDesc.digest,
        digest: rec.descriptor.digest,
        created: (config as ImageConfig).created,
        size: imageSize(manifest),
      });
    }
    if (this.flags.format === 'json') {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return;
    }
    const out = [['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']];
    for (const r of rows) out.push([r.repository, r.tag, this.flags['no-trunc'] ? r.id : shortId(r.id), humanAge(r.created), humanSize(r.size)]);
    process.stdout.write(table(out));
  }
}

/** Bytes the image takes in the store: its layers (as stored, compressed) plus config and manifest. */
export function imageSize(m: ImageManifest): number {
  return m.layers.reduce((n, l) => n + l.size, m.config.size);
}
