import { Args, Flags } from '../cli-kit.js';
import { WorkingContainer } from '@tsbuild/container';
import { InvalidArgumentError } from '@tsbuild/oci';
import { BaseCommand } from '../base-command.js';
import { registryClient, registryFlags } from '../registry-flags.js';

/** `tsbuild copy` (and, as its subclass, `tsbuild add`): buildah's verbs with the Dockerfile's COPY and ADD semantics. */
export default class Copy extends BaseCommand<typeof Copy> {
  static kind: 'COPY' | 'ADD' = 'COPY';
  static override summary = 'Copy files into a working container (COPY semantics)';
  static override description =
    'As `buildah copy`. Sources are host paths (relative ones from the current directory), or with --contextdir paths ' +
    'inside that directory (its .containerignore or .dockerignore applies), or with --from paths in another working ' +
    'container or an image. Wildcards, symlinks, ownership and the destination rules are those of the Dockerfile\'s COPY.';
  static override strict = false;
  static override examples = ['<%= config.bin %> copy $ctr app/ /app/', '<%= config.bin %> copy --chown 1000:1000 --chmod 640 $ctr config.toml /etc/app/', '<%= config.bin %> copy --from builder-working-container $ctr /out/bin /usr/local/bin/'];
  static override args = {
    container: Args.string({ description: 'working container name or ID', required: true }),
    sources: Args.string({ description: 'SRC… DEST', required: true }),
  };
  static override flags = {
    chown: Flags.string({ description: 'owner USER[:GROUP] of the copied files (names looked up in the container)' }),
    chmod: Flags.string({ description: 'mode of the copied files (octal)' }),
    from: Flags.string({ description: 'copy from this working container or image instead of the host' }),
    contextdir: Flags.string({ description: 'directory the sources are looked up in (their root)' }),
    ignorefile: Flags.string({ description: 'ignore file for --contextdir (default: its .containerignore or .dockerignore)' }),
    'add-history': Flags.boolean({ description: 'record this step in the next commit\'s history' }),
    checksum: Flags.string({ description: 'expected digest (sha256:…) of a URL source' }),
    exclude: Flags.string({ description: 'exclude paths matching this pattern (repeatable)', multiple: true }),
    parents: Flags.boolean({ description: 'keep the sources\' parent directories' }),
    quiet: Flags.boolean({ char: 'q', description: 'print nothing (accepted for buildah\'s scripts)' }),
    ...registryFlags,
  };

  async run(): Promise<void> {
    const kind = (this.constructor as typeof Copy).kind;
    const verb = kind.toLowerCase();
    const { argv } = await this.parse(Copy);
    const f = this.flags;
    const [container, ...rest] = argv as string[];
    if (rest.length < 2) throw new InvalidArgumentError(`${verb}: want a container, at least one source and a destination`);
    const env = await this.containerEnv(() => registryClient(f));
    try {
      const wc = await WorkingContainer.open(env, container!);
      const opts = {
        ...(f.chown !== undefined ? { chown: f.chown } : {}),
        ...(f.chmod !== undefined ? { chmod: f.chmod } : {}),
        ...(f.from !== undefined ? { from: f.from } : {}),
        ...(f.contextdir !== undefined ? { contextDir: f.contextdir } : {}),
        ...(f.ignorefile !== undefined ? { ignoreFile: f.ignorefile } : {}),
        ...(f.checksum !== undefined ? { checksum: f.checksum } : {}),
        ...(f.exclude ? { exclude: f.exclude } : {}),
        ...(f.parents ? { parents: true } : {}),
        ...(f['add-history'] ? { addHistory: true } : {}),
      };
      if (kind === 'COPY') await wc.copy(rest.slice(0, -1), rest.at(-1)!, opts);
      else await wc.add(rest.slice(0, -1), rest.at(-1)!, opts);
    } finally {
      await env.close();
    }
  }
}
