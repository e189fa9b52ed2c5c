import { BIN, CliError, type Command, commandHelp, report, rootHelp } from './cli-kit.js';
import { globalFlags, splitGlobalFlags } from './global-flags.js';
import { cliVersion as version } from './version-info.js';

export { internalError } from './cli-kit.js';
import { commandSummaries } from './command-summaries.js';
import { needsUserNamespace, reexecInUserNamespace } from './user-namespace.js';
import { print } from './print.js';

/** Every command, loaded only when it runs: a command imports just the packages it needs. */
const COMMANDS: Record<string, () => Promise<{ default: typeof Command }>> = {
  add: () => import('./commands/add.js'),
  build: () => import('./commands/build.js'),
  commit: () => import('./commands/commit.js'),
  config: () => import('./commands/config.js'),
  containers: () => import('./commands/containers.js'),
  copy: () => import('./commands/copy.js'),
  debug: () => import('./commands/debug.js'),
  diff: () => import('./commands/diff.js'),
  export: () => import('./commands/export.js'),
  from: () => import('./commands/from.js'),
  fsck: () => import('./commands/fsck.js'),
  history: () => import('./commands/history.js'),
  images: () => import('./commands/images.js'),
  import: () => import('./commands/import.js'),
  info: () => import('./commands/info.js'),
  inspect: () => import('./commands/inspect.js'),
  load: () => import('./commands/load.js'),
  logs: () => import('./commands/logs.js'),
  login: () => import('./commands/login.js'),
  logout: () => import('./commands/logout.js'),
  manifest: () => import('./commands/manifest.js'),
  mount: () => import('./commands/mount.js'),
  prune: () => import('./commands/prune.js'),
  pull: () => import('./commands/pull.js'),
  push: () => import('./commands/push.js'),
  rename: () => import('./commands/rename.js'),
  rm: () => import('./commands/rm.js'),
  rmi: () => import('./commands/rmi.js'),
  run: () => import('./commands/run.js'),
  save: () => import('./commands/save.js'),
  snapshots: () => import('./commands/snapshots.js'),
  tag: () => import('./commands/tag.js'),
  umount: () => import('./commands/umount.js'),
  unshare: () => import('./commands/unshare.js'),
  version: () => import('./commands/version.js'),
};

export const commandIds = Object.keys(COMMANDS);

async function load(id: string): Promise<typeof Command> {
  const c = (await COMMANDS[id]!()).default;
  c.id = id;
  return c;
}

/** Runs `tsbuild [GLOBAL FLAGS] ARGV…`; resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  let globals: string[];
  let words: string[];
  try {
    ({ globals, rest: words } = splitGlobalFlags(argv));
  } catch (e) {
    return report(e, '');
  }
  const [first, ...rest] = words;
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
    print(rootHelp(await commandSummaries(commandIds, load), version(), globalFlags));
    return 0;
  }
  if (first === '--version' || first === '-v') {
    print(`${BIN} ${version()} ${process.platform}-${process.arch} node-${process.version}\n`);
    return 0;
  }
  const id = first === 'help' ? rest[0]! : first;
  if (!Object.hasOwn(COMMANDS, id)) return report(new CliError(`command ${id} not found (see: ${BIN} --help)`, 2), '');
  if (first !== 'help' && needsUserNamespace(id)) {
    try {
      return await reexecInUserNamespace();
    } catch (e) {
      return report(e, id);
    }
  }
  const c = await load(id);
  if (first === 'help') {
    print(commandHelp(c));
    return 0;
  }
  // Global flags given before the command go first: a repeated one after the command wins, as
  // with pflag's persistent flags.
  return c.run([...globals, ...rest]);
}
