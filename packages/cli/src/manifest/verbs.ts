import { writeFile } from 'node:fs/promises';
import { Args, Flags } from '../cli-kit.js';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, digestHex, isIndexMediaType, parseReference, type Digest, type ImageIndex } from '@tsbuild/oci';
import { emptyManifestList, readManifestList, withEntry, withoutEntry, writeManifestList } from '@tsbuild/store';
import type { RegistryClient } from '@tsbuild/registry-client';
import { BaseCommand, normalisedName } from '../base-command.js';
import { ProgressPrinter, registryClient, registryFlags } from '../registry-flags.js';
import { DOCKER_TRANSPORT, applyPlatformFlags, checkPlatformFlags, entriesFor, findEntry, platformFlags } from './list-entries.js';
import { print } from '../print.js';

/** A client made on first use (only a docker:// argument needs one), closed by `close`. */
function lazyClient(f: Parameters<typeof registryClient>[0]): { get: () => Promise<RegistryClient>; close: () => Promise<void> } {
  let c: Promise<RegistryClient> | undefined;
  return {
    get: () => (c ??= registryClient(f)),
    close: async () => {
      if (c !== undefined) await (await c).close();
    },
  };
}

/** buildah prints lists with json.MarshalIndent(…, "", "    "). */
function printJSON(value: unknown): void {
  print(`${JSON.stringify(value, null, 4)}\n`);
}

export class ManifestCreate extends BaseCommand<typeof ManifestCreate> {
  static override summary = 'Create a manifest list (an OCI image index), optionally with images in it';
  static override strict = false;
  static override args = {
    list: Args.string({ description: 'name of the list', required: true }),
    image: Args.string({ description: 'image, list or docker://REF to add (more may follow)' }),
  };
  static override flags = {
    all: Flags.boolean({ description: 'add every image of an IMAGE that is a list' }),
    amend: Flags.boolean({ description: 'add to the list of that name if there is one' }),
    ...registryFlags,
  };
  static override examples = ['<%= config.bin %> manifest create localhost/list', '<%= config.bin %> manifest create localhost/list img-amd64 img-arm64'];

  async run(): Promise<void> {
    const { args, argv } = await this.parse(ManifestCreate);
    const store = await this.store();
    let list: ImageIndex = emptyManifestList('oci');
    let remote = new Map<Digest, string>();
    const existing = await readManifestList(store, args.list).catch((e: unknown) => {
      if (e instanceof NotFoundError && normalisedName(args.list) !== undefined) return undefined;
      throw e;
    });
    const normal = normalisedName(args.list);
    if (normal === undefined) throw new InvalidArgumentError(`invalid manifest list name "${args.list}"`);
    if (existing !== undefined) {
      if (!this.flags.amend) throw new FailedPreconditionError(`manifest list ${normal} already exists (add --amend to change it)`);
      ({ list, remote } = existing);
    } else if ((await store.listImages()).some((r) => r.name === normal)) {
      throw new FailedPreconditionError(`${normal} names an image, not a manifest list`);
    }
    const client = lazyClient(this.flags);
    try {
      for (const image of (argv as string[]).slice(1)) {
        const got = await entriesFor(store, image, { all: this.flags.all, client: client.get });
        for (const e of got.entries) {
          list = withEntry(list, e);
          if (got.remote) remote.set(e.digest, got.source);
          else remote.delete(e.digest);
        }
      }
    } finally {
      await client.close();
    }
    const d = await writeManifestList(store, normal, list, { remote });
    print(`${digestHex(d.digest)}\n`);
  }
}

export class ManifestAdd extends BaseCommand<typeof ManifestAdd> {
  static override summary = 'Add an image to a manifest list';
  static override description =
    'IMAGE is an image or list in the store, or docker://REF: then its manifest digest and size are read from the registry and nothing is pulled, as buildah does. ' +
    'The entry\'s platform is the image config\'s unless given with the flags.';
  static override args = {
    list: Args.string({ description: 'name of the list', required: true }),
    image: Args.string({ description: 'image, list or docker://REF', required: true }),
  };
  static override flags = {
    all: Flags.boolean({ description: 'add every image of an IMAGE that is a list' }),
    ...platformFlags,
    ...registryFlags,
  };
  static override examples = ['<%= config.bin %> manifest add localhost/list img-arm64', '<%= config.bin %> manifest add --arch arm --variant v7 localhost/list docker://registry.example/app:1'];

  async run(): Promise<void> {
    const { args } = await this.parse(ManifestAdd);
    checkPlatformFlags(this.flags);
    const store = await this.store();
    const { list: current, remote } = await readManifestList(store, args.list);
    let list = current;
    const client = lazyClient(this.flags);
    let got: Awaited<ReturnType<typeof entriesFor>>;
    try {
      got = await entriesFor(store, args.image, { all: this.flags.all, client: client.get });
    } finally {
      await client.close();
    }
    for (const e of got.entries) {
      list = withEntry(list, applyPlatformFlags(e, this.flags));
      if (got.remote) remote.set(e.digest, got.source);
      else remote.delete(e.digest);
    }
    const d = await writeManifestList(store, listName(args.list), list, { remote });
    for (const e of got.entries) print(`${digestHex(d.digest)}: ${e.digest}\n`);
  }
}

export class ManifestAnnotate extends BaseCommand<typeof ManifestAnnotate> {
  static override summary = 'Set the platform or annotations of an entry of a manifest list';
  static override args = {
    list: Args.string({ description: 'name of the list', required: true }),
    image: Args.string({ description: 'the entry: its manifest digest, or an image in the store', required: true }),
  };
  static override flags = { ...platformFlags };

  async run(): Promise<void> {
    const { args } = await this.parse(ManifestAnnotate);
    checkPlatformFlags(this.flags);
    const store = await this.store();
    const { list, remote } = await readManifestList(store, args.list);
    const entry = await findEntry(store, list, args.list, args.image);
    const d = await writeManifestList(store, listName(args.list), withEntry(list, applyPlatformFlags(entry, this.flags)), { remote });
    print(`${digestHex(d.digest)}: ${entry.digest}\n`);
  }
}

export class ManifestInspect extends BaseCommand<typeof ManifestInspect> {
  static override summary = 'Print a manifest list (local, or docker://REF in a registry) as JSON';
  static override args = { list: Args.string({ description: 'name of the list, or docker://REF', required: true }) };
  static override flags = { ...registryFlags };

  async run(): Promise<void> {
    const { args } = await this.parse(ManifestInspect);
    if (args.list.startsWith(DOCKER_TRANSPORT)) {
      const client = await registryClient(this.flags);
      try {
        const { body } = await client.getManifest(parseReference(args.list.slice(DOCKER_TRANSPORT.length)));
        printJSON(JSON.parse(body.toString('utf8')));
      } finally {
        await client.close();
      }
      return;
    }
    printJSON((await readManifestList(await this.store(), args.list)).list);
  }
}

export class ManifestRemove extends BaseCommand<typeof ManifestRemove> {
  static override summary = 'Remove an entry from a manifest list';
  static override args = {
    list: Args.string({ description: 'name of the list', required: true }),
    digest: Args.string({ description: 'manifest digest of the entry', required: true }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(ManifestRemove);
    const store = await this.store();
    const { list, remote } = await readManifestList(store, args.list);
    const entry = await findEntry(store, list, args.list, args.digest);
    const d = await writeManifestList(store, listName(args.list), withoutEntry(list, entry.digest, args.list), { remote });
    print(`${digestHex(d.digest)}: ${entry.digest}\n`);
  }
}

export class ManifestRm extends BaseCommand<typeof ManifestRm> {
  static override summary = 'Remove manifest lists (their images stay)';
  static override strict = false;
  static override args = { list: Args.string({ description: 'name of the list (more may follow)', required: true }) };

  async run(): Promise<void> {
    const { argv } = await this.parse(ManifestRm);
    const store = await this.store();
    // Every name is checked first: a bad one removes nothing.
    const found = [];
    for (const name of argv as string[]) found.push({ name: listName(name), ...(await readManifestList(store, name)) });
    for (const f of found) {
      await store.removeName(f.name);
      print(`untagged: ${f.name}\n${digestHex(f.descriptor.digest)}\n`);
    }
  }
}

export class ManifestExists extends BaseCommand<typeof ManifestExists> {
  static override summary = 'Exit 0 when a manifest list of that name exists, 1 when not';
  static override args = { list: Args.string({ description: 'name of the list', required: true }) };

  async run(): Promise<void> {
    const { args } = await this.parse(ManifestExists);
    const store = await this.store();
    const found = await store.resolve(args.list).catch((e: unknown) => {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    });
    if (found === undefined || !isIndexMediaType(found.descriptor.mediaType)) this.exit(1);
  }
}

export class ManifestPush extends BaseCommand<typeof ManifestPush> {
  static override summary = 'Push a manifest list to a registry, with --all its images first';
  static override description =
    'DEST is [docker://]REF (default: the list\'s name). With --all every image of the list that is in the store is pushed before the list; ' +
    'entries added from a registry (manifest add docker://…) must be in DEST\'s repository already. --format v2s2 (or docker) pushes a Docker manifest list, the images as Docker schema 2.';
  static override args = {
    list: Args.string({ description: 'name of the list', required: true }),
    destination: Args.string({ description: '[docker://][host[:port]/]repo[:tag]' }),
  };
  static override flags = {
    all: Flags.boolean({ description: 'also push the images in the list' }),
    format: Flags.string({ char: 'f', description: 'manifest type of the list (default: as stored)', options: ['oci', 'v2s2', 'docker'] }),
    rm: Flags.boolean({ description: 'remove the manifest list once pushed' }),
    digestfile: Flags.string({ description: 'write the digest of the pushed list to this file' }),
    quiet: Flags.boolean({ char: 'q', description: 'no progress output' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const { args } = await this.parse(ManifestPush);
    const f = this.flags;
    const store = await this.store();
    const { descriptor, remote } = await readManifestList(store, args.list);
    const destText = args.destination ?? args.list;
    const dest = parseReference(destText.startsWith(DOCKER_TRANSPORT) ? destText.slice(DOCKER_TRANSPORT.length) : destText);
    const progress = ProgressPrinter.forStream(f.quiet);
    const client = await registryClient(f, progress.onProgress);
    try {
      const { push } = await import('@tsbuild/registry-client');
      const d = await push(client, store, descriptor, dest, {
        ...(f.format !== undefined ? { format: f.format === 'oci' ? 'oci' : 'docker' } : {}),
        listImages: f.all ? 'all' : 'none',
        remoteEntries: new Set(remote.keys()),
        onProgress: progress.onProgress,
      });
      progress.stop();
      if (f.digestfile) await writeFile(f.digestfile, d.digest);
      if (f.rm) await store.removeName(listName(args.list));
      print(`${d.digest}\n`);
    } finally {
      progress.stop();
      await client.close();
    }
  }
}

function listName(name: string): string {
  const n = normalisedName(name);
  if (n === undefined) throw new InvalidArgumentError(`invalid manifest list name "${name}"`);
  return n;
}

export const VERBS = {
  create: ManifestCreate,
  add: ManifestAdd,
  annotate: ManifestAnnotate,
  inspect: ManifestInspect,
  remove: ManifestRemove,
  rm: ManifestRm,
  exists: ManifestExists,
  push: ManifestPush,
};
