import { Flags, oneLine } from '../cli-kit.js';
import { DataLossError, type ImageIndex, type ImageManifest, isIndexMediaType, familiarReference, parseReference, shortId } from '@tsbuild/oci';
import { BaseCommand, humanAge, humanSize, table } from '../base-command.js';
import { print } from '../print.js';

export default class Images extends BaseCommand<typeof Images> {
  static override summary = 'List images in the local store';
  static override flags = {
    format: Flags.string({ description: 'output format', options: ['table', 'json'], default: 'table' }),
    'no-trunc': Flags.boolean({ description: 'show full image IDs' }),
    quiet: Flags.boolean({ char: 'q', description: 'print only the image IDs, each once' }),
    noheading: Flags.boolean({ char: 'n', description: 'do not print the column headings' }),
  };

  async run(): Promise<void> {
    const store = await this.store();
    const rows: { name: string | null; repository: string; tag: string; id: string; digest: string; created: string | undefined; size: number; manifestList: boolean }[] = [];
    for (const rec of await store.listImages()) {
      // One damaged image (fsck names what is wrong) must not hide the others: it is listed with
      // what can be read, or left out when not even its manifest can, each time with a warning.
      const what = rec.name ?? rec.descriptor.digest;
      const warn = (e: unknown, outcome: string) => process.stderr.write(`Warning: image ${what}: ${oneLine((e as Error).message)} (${outcome}; see: tsbuild fsck)\n`);
      const img = store.image(rec.descriptor);
      let repository = '<none>';
      let tag = '<none>';
      if (rec.name !== undefined) {
        try {
          const ref = parseReference(rec.name);
          repository = familiarReference({ domain: ref.domain, path: ref.path });
          tag = ref.tag ?? '<none>';
        } catch (e) {
          // A name stored before the reference rules were as strict: shown as stored, so `rmi ID` can remove it.
          warn(e, 'listed under its stored name');
          const colon = rec.name.lastIndexOf(':');
          [repository, tag] = colon > rec.name.lastIndexOf('/') ? [rec.name.slice(0, colon), rec.name.slice(colon + 1)] : [rec.name, '<none>'];
        }
      }
      if (isIndexMediaType(rec.descriptor.mediaType)) {
        // A manifest list is listed as buildah lists it, among the images: its ID is its digest,
        // its size the list's own bytes plus its images' manifests.
        try {
          const list = await store.readJSON<ImageIndex>(rec.descriptor.digest);
          if (!Array.isArray(list.manifests)) throw new DataLossError(`manifest list ${rec.descriptor.digest} has no manifests array`);
          const size = list.manifests.reduce((n, m) => n + m.size, rec.descriptor.size);
          rows.push({ name: rec.name ?? null, repository, tag, id: rec.descriptor.digest, digest: rec.descriptor.digest, created: undefined, size, manifestList: true });
        } catch (e) {
          warn(e, 'not listed');
        }
        continue;
      }
      let manifest: ImageManifest;
      try {
        manifest = await img.manifest();
        imageSize(manifest);
      } catch (e) {
        warn(e, 'not listed');
        continue;
      }
      let created: string | undefined;
      try {
        const config = await img.config();
        if (typeof config !== 'object' || config === null) throw new DataLossError(`config ${manifest.config.digest} is not a JSON object`);
        created = typeof config.created === 'string' ? config.created : undefined;
      } catch (e) {
        warn(e, 'listed without its creation time');
      }
      rows.push({
        name: rec.name ?? null,
        repository,
        tag,
        id: manifest.config.digest,
        digest: rec.descriptor.digest,
        created,
        size: imageSize(manifest),
        manifestList: false,
      });
    }
    if (this.flags.format === 'json') {
      print(`${JSON.stringify(rows, null, 2)}\n`);
      return;
    }
    const id = (r: (typeof rows)[number]): string => (this.flags['no-trunc'] ? r.id : shortId(r.id as `sha256:${string}`));
    if (this.flags.quiet) {
      // As buildah and podman: one line per image, an image with several names once.
      print([...new Set(rows.map(id))].map((i) => `${i}\n`).join(''));
      return;
    }
    const out = this.flags.noheading ? [] : [['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']];
    for (const r of rows) out.push([r.repository, r.tag, id(r), humanAge(r.created), humanSize(r.size)]);
    if (out.length > 0) print(table(out));
  }
}

/** Bytes the image takes in the store: its layers (as stored, compressed) plus config and manifest. */
export function imageSize(m: ImageManifest): number {
  const size = m.layers.reduce((n, l) => n + l.size, m.config.size);
  if (!Number.isSafeInteger(size)) throw new DataLossError(`manifest lists sizes that are not numbers`);
  return size;
}
