import path from 'node:path';
import { Flags } from '../cli-kit.js';
import { loadArchive } from '@tsbuild/store';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Load extends BaseCommand<typeof Load> {
  static override summary = 'Load images from an oci-archive or docker-archive file (plain or gzip) or an OCI layout directory';
  static override flags = { input: Flags.string({ char: 'i', description: 'archive to read', required: true }) };

  async run(): Promise<void> {
    const store = await this.store();
    const loaded = await store.withLock('shared', () => loadArchive(store, path.resolve(this.flags.input)));
    for (const l of loaded) print(`Loaded image: ${l.name ?? l.descriptor.digest}\n`);
  }
}
