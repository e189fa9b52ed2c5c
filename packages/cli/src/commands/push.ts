import { writeFile } from 'node:fs/promises';
import { Args, Flags } from '../cli-kit.js';
import { isIndexMediaType, parseReference } from '@tsbuild/oci';
import { readManifestList } from '@tsbuild/store';
import { push } from '@tsbuild/registry-client';
import { BaseCommand } from '../base-command.js';
import { ProgressPrinter, registryClient, registryFlags } from '../registry-flags.js';
import { print } from '../print.js';

export default class Push extends BaseCommand<typeof Push> {
  static override summary = 'Push an image from the store to a registry';
  static override description =
    'Layers stored uncompressed (what builds store) are compressed on the way, once: the compressed blobs are kept and reused by the next push. ' +
    'Compressed layers go as they are stored, so an image pulled and pushed elsewhere keeps its manifest digest. DEST defaults to the image\'s name.';
  static override examples = ['<%= config.bin %> push hello 127.0.0.1:5000/demo/hello:1 --tls-verify=false', '<%= config.bin %> push --format docker registry.example/app:1'];
  static override args = {
    image: Args.string({ description: 'image name or ID', required: true }),
    destination: Args.string({ description: 'where to push: [host[:port]/]repo[:tag]' }),
  };
  static override flags = {
    format: Flags.string({ description: 'manifest format to push', options: ['oci', 'docker'], default: 'oci' }),
    'digestfile': Flags.string({ description: 'write the pushed manifest digest to this file' }),
    'compression-format': Flags.string({ description: 'compression for layers stored uncompressed', options: ['gzip', 'zstd'], default: 'gzip' }),
    'compression-level': Flags.integer({ description: 'compression level (gzip 1-9, zstd 1-22)' }),
    'disable-compression': Flags.boolean({ char: 'D', description: 'push every layer as stored, uncompressed ones uncompressed', default: false, allowNo: true }),
    quiet: Flags.boolean({ char: 'q', description: 'no progress output' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Push);
    const f = this.flags;
    const progress = ProgressPrinter.forStream(f.quiet);
    const client = await registryClient(f, progress.onProgress);
    try {
      const dest = parseReference(args.destination ?? args.image);
      // Reach the registry while the store opens.
      client.warmUp(dest.domain);
      const store = await this.store();
      // A manifest list goes with every image of it that is in the store (buildah's `manifest push --all`);
      // entries added from a registry must be there already.
      const { descriptor } = await store.resolve(args.image);
      const remote = isIndexMediaType(descriptor.mediaType) ? (await readManifestList(store, args.image)).remote : new Map<string, string>();
      const d = await push(client, store, args.image, dest, {
        listImages: 'all',
        remoteEntries: new Set(remote.keys()),
        format: f.format as 'oci' | 'docker',
        compression: f['disable-compression'] ? false : { format: f['compression-format'] as 'gzip' | 'zstd', ...(f['compression-level'] !== undefined ? { level: f['compression-level'] } : {}) },
        onProgress: progress.onProgress,
      });
      progress.stop();
      if (f.digestfile) await writeFile(f.digestfile, d.digest);
      if (!f.quiet) process.stderr.write(`Pushed ${args.destination ?? args.image} (${d.digest})\n`);
      print(`${d.digest}\n`);
    } finally {
      progress.stop();
      await client.close();
    }
  }
}
