import { Flags } from '../cli-kit.js';
import { WorkingContainer } from '@tsbuild/container';
import { BaseCommand, table } from '../base-command.js';
import { print } from '../print.js';

export default class Containers extends BaseCommand<typeof Containers> {
  static override summary = 'List working containers';
  static override description = 'As `buildah containers`: ID, builder, image ID, image name and container name of every working container.';
  static override flags = {
    all: Flags.boolean({ char: 'a', description: 'also containers not made by tsbuild (there are none: accepted for buildah\'s scripts)' }),
    quiet: Flags.boolean({ char: 'q', description: 'print only the container IDs' }),
    noheading: Flags.boolean({ char: 'n', description: 'omit the heading' }),
    notruncate: Flags.boolean({ description: 'print full IDs' }),
    json: Flags.boolean({ description: 'output as JSON (as --format json)' }),
    format: Flags.string({ description: 'output format: table or json' }),
  };

  async run(): Promise<void> {
    await this.parse(Containers);
    const f = this.flags;
    const list = await WorkingContainer.list(await this.containerEnv());
    const cut = (id: string) => (f.notruncate ? id : id.slice(0, 12));
    if (f.json || f.format === 'json') {
      const out = list.map((r) => ({ id: r.id, builder: true, imageid: r.image ? r.image.id.replace(/^sha256:/, '') : '', imagename: r.image?.name ?? 'scratch', containername: r.name }));
      print(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    if (f.format !== undefined && f.format !== 'table') throw new (await import('@tsbuild/oci')).InvalidArgumentError(`--format ${f.format}: want table or json`);
    if (f.quiet) {
      for (const r of list) print(`${cut(r.id)}\n`);
      return;
    }
    const rows = f.noheading ? [] : [['CONTAINER ID', 'BUILDER', 'IMAGE ID', 'IMAGE NAME', 'CONTAINER NAME']];
    for (const r of list) rows.push([cut(r.id), '*', r.image ? cut(r.image.id.replace(/^sha256:/, '')) : '', r.image?.name ?? 'scratch', r.name]);
    if (rows.length > 0) print(table(rows));
  }
}
