import { Args, Flags } from '../cli-kit.js';
import { listMounts, mountImage } from '@tsbuild/image';
import { FailedPreconditionError, shortId } from '@tsbuild/oci';
import { USERNS_ENV } from '../user-namespace.js';
import { WorkingContainer } from '@tsbuild/container';
import { BaseCommand, table } from '../base-command.js';
import { print } from '../print.js';

export default class Mount extends BaseCommand<typeof Mount> {
  static override summary = 'Mount a working container read-write (or an image read-only) and print the mount point';
  static override description =
    'As `buildah mount`: a working container\'s filesystem is mounted read-write, and what is changed there is in its next ' +
    'commit; an image\'s flattened filesystem is mounted read-only. The mount stays until `tsbuild umount NAME`. A container ' +
    'name wins over an image of the same name. Without NAME, lists the mounts.';
  static override examples = ['<%= config.bin %> mount app:1', 'ls $(<%= config.bin %> mount app:1)/etc'];
  static override args = { image: Args.string({ description: 'working container, or image name or ID' }) };
  static override flags = {
    format: Flags.string({ description: 'output format of the listing', options: ['table', 'json'], default: 'table' }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Mount);
    const s = await this.snapshotter();
    const env = await this.containerEnv();
    if (args.image === undefined) {
      const containers: { container: string; path: string }[] = [];
      for (const r of await WorkingContainer.list(env)) {
        const wc = await WorkingContainer.find(env, r.id);
        if (wc?.isMounted()) containers.push({ container: r.name, path: wc.mountPath });
      }
      const mounts = await listMounts(s);
      if (this.flags.format === 'json') {
        print(`${JSON.stringify([...containers, ...mounts], null, 2)}\n`);
        return;
      }
      for (const c of containers) print(`${c.container} ${c.path}\n`);
      const rows = [['IMAGE ID', 'MOUNT POINT', 'MOUNTED']];
      for (const m of mounts) rows.push([m.imageId ? shortId(m.imageId as `sha256:${string}`) : '', m.path, String(m.mounted)]);
      print(table(rows));
      return;
    }
    // A rootless command runs in a namespace of its own that ends with it, and its mounts with it.
    if (process.env[USERNS_ENV] === 'transient') {
      throw new FailedPreconditionError(`rootless: a mount made by this command would vanish when it ends: run it in a \`tsbuild unshare\` session (tsbuild unshare, then tsbuild mount ${args.image})`);
    }
    const wc = await WorkingContainer.find(env, args.image);
    if (wc) {
      print(`${await wc.mount()}\n`);
      return;
    }
    const store = await this.store();
    const { descriptor } = await store.resolve(args.image);
    const m = await mountImage(store, s, store.image(descriptor));
    print(`${m.path}\n`);
  }
}
