import { BIN, CliError, Command, commandHelp, report as printError } from '../cli-kit.js';
import { globalFlags, splitGlobalFlags } from '../global-flags.js';
import { VERBS } from '../manifest/verbs.js';
import { print } from '../print.js';

/**
 * `tsbuild manifest VERB …`, as buildah's: cli-kit has no subcommands, so this command takes the
 * verb (the first word after the global flags) and runs that verb's own command, which parses the
 * rest; `manifest VERB --help` is the verb's help.
 */
export default class Manifest extends Command {
  static override summary = 'Create, change, inspect and push manifest lists (image indexes)';
  static override description =
    `Verbs: ${Object.entries(VERBS)
      .map(([v, c]) => `${v} (${(c.summary ?? '').replace(/^./, (x) => x.toLowerCase())})`)
      .join('; ')}. See: ${BIN} manifest VERB --help.`;
  static override examples = [
    '<%= config.bin %> manifest create localhost/list img-amd64 img-arm64',
    '<%= config.bin %> manifest push --all localhost/list 127.0.0.1:5000/app:1 --tls-verify=false',
  ];
  static override strict = false;
  static override baseFlags = globalFlags;

  static override async run(this: typeof Command, argv: string[]): Promise<number> {
    let split: { globals: string[]; rest: string[] };
    try {
      split = splitGlobalFlags(argv);
    } catch (e) {
      return report(e);
    }
    const [verb, ...rest] = split.rest;
    if (verb === '--help' || verb === '-h' || verb === 'help') {
      print(commandHelp(this));
      return 0;
    }
    if (verb === undefined) return report(new CliError(`manifest: a verb is needed: one of ${Object.keys(VERBS).join(', ')}`, 2));
    if (!Object.hasOwn(VERBS, verb)) return report(new CliError(`manifest: unknown verb "${verb}": want one of ${Object.keys(VERBS).join(', ')}`, 2));
    const c = VERBS[verb as keyof typeof VERBS];
    c.id = `manifest ${verb}`;
    return c.run([...split.globals, ...rest]);
  }

  async run(): Promise<void> {
    // Never reached: the static run dispatches.
  }
}

function report(e: unknown): number {
  return printError(e, 'manifest');
}
