import { Args, Flags } from '../cli-kit.js';
import { WorkingContainer } from '@tsbuild/container';
import { type ImageIndex, NotFoundError, isIndexMediaType } from '@tsbuild/oci';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Inspect extends BaseCommand<typeof Inspect> {
  static override summary = 'Show a working container\'s state, or an image\'s manifest and config, as JSON';
  static override description =
    'As `buildah inspect`: with --type container (the default) NAME is a working container, and when there is none of that ' +
    'name an image is looked up instead (unless --type was given); with --type image only images.';
  static override args = { image: Args.string({ description: 'working container, or image name or ID', required: true }) };
  static override flags = {
    type: Flags.string({ char: 't', description: 'what NAME is: container, image, or manifest (a manifest list, printed as `manifest inspect` does)', options: ['container', 'image', 'manifest'] }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Inspect);
    if (this.flags.type === 'manifest') {
      const { readManifestList } = await import('@tsbuild/store');
      print(`${JSON.stringify((await readManifestList(await this.store(), args.image)).list, null, 4)}\n`);
      return;
    }
    if (this.flags.type !== 'image') {
      const wc = await WorkingContainer.find(await this.containerEnv(), args.image);
      if (wc) {
        const r = wc.record;
        const out = {
          Type: 'tsbuild 0.0.1',
          FromImage: r.image?.name ?? 'scratch',
          FromImageID: r.image ? r.image.id.replace(/^sha256:/, '') : '',
          FromImageDigest: r.image?.manifest.digest ?? '',
          Container: r.name,
          ContainerID: r.id,
          MountPoint: wc.isMounted() ? wc.mountPath : '',
          Created: r.created,
          Config: r.config,
          ImageAnnotations: r.annotations,
          ImageCreatedBy: r.createdBy ?? '',
          HistoryComment: r.historyComment ?? '',
          PendingHistory: r.pendingHistory,
        };
        print(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      if (this.flags.type === 'container') throw new NotFoundError(`container ${args.image}: no such working container`);
    }
    const store = await this.store();
    const { descriptor, names } = await store.resolve(args.image);
    if (isIndexMediaType(descriptor.mediaType)) {
      // A manifest list (buildah inspects one with --type manifest): the list, not one of its images.
      const list = await store.readJSON<ImageIndex>(descriptor.digest);
      const out: Record<string, unknown> = { Id: descriptor.digest, Names: names, Digest: descriptor.digest, ManifestDescriptor: descriptor, ManifestList: list };
      print(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    const img = store.image(descriptor);
    const [manifest, config, configDesc] = await Promise.all([img.manifest(), img.config(), img.configDescriptor()]);
    const out = { Id: configDesc.digest, Names: names, Digest: descriptor.digest, ManifestDescriptor: descriptor, Manifest: manifest, Config: config };
    print(`${JSON.stringify(out, null, 2)}\n`);
  }
}
