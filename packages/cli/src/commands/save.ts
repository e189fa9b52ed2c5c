import path from 'node:path';
import { Args, Flags } from '../cli-kit.js';
import { InvalidArgumentError, NotFoundError, isIndexMediaType } from '@tsbuild/oci';
import { readManifestList, saveArchive } from '@tsbuild/store';
import { BaseCommand, normalisedName } from '../base-command.js';

export default class Save extends BaseCommand<typeof Save> {
  static override summary = 'Write images to an oci-archive or docker-archive file';
  static override strict = false;
  static override args = { image: Args.string({ description: 'image name or ID (more may follow)', required: true }) };
  static override flags = {
    output: Flags.string({ char: 'o', description: 'archive file to write', required: true }),
    format: Flags.string({ description: 'archive format', options: ['oci-archive', 'docker-archive'], default: 'oci-archive' }),
  };

  async run(): Promise<void> {
    const { argv } = await this.parse(Save);
    const store = await this.store();
    const images = [];
    for (const image of argv as string[]) {
      const { descriptor, names } = await store.resolve(image);
      if (isIndexMediaType(descriptor.mediaType)) {
        if (this.flags.format === 'docker-archive') throw new InvalidArgumentError(`${image} is a manifest list: a docker-archive holds single images (use --format oci-archive)`);
        const { list, remote } = await readManifestList(store, descriptor.digest);
        for (const m of list.manifests) {
          if ((await store.content.info(m.digest)) === undefined) {
            throw new NotFoundError(`cannot save manifest list ${image}: its image ${m.digest}${m.platform ? ` (${m.platform.os}/${m.platform.architecture})` : ''} is not in the store${remote.has(m.digest) ? ` (added from ${remote.get(m.digest)}; pull it first)` : ''}`);
          }
        }
      }
      // The name the user gave, when it is one; for an image ID, the image's first name.
      const exact = names.find((n) => n === normalisedName(image)) ?? names[0];
      images.push({ ...(exact !== undefined ? { name: exact } : {}), descriptor });
    }
    await saveArchive(store, images, path.resolve(this.flags.output), this.flags.format as 'oci-archive' | 'docker-archive');
  }
}
