import { constants } from 'node:os';
import { WorkingContainer } from '@tsbuild/container';
import { inUserNamespace } from '@tsbuild/linux';
import { InvalidArgumentError, childProcess } from '@tsbuild/oci';
import { Args, Flags } from '../cli-kit.js';
import { BaseCommand } from '../base-command.js';
import { USERNS_ENV } from '../user-namespace.js';

export default class Unshare extends BaseCommand<typeof Unshare> {
  static override summary = 'Run a shell (or a command) in the user and mount namespace rootless commands use';
  static override description =
    'As `buildah unshare`: for an ordinary user, tsbuild runs every command in a user namespace where the user is root and ' +
    'the subordinate ids of /etc/subuid and /etc/subgid are ids 1…N. `tsbuild unshare` opens a shell (or runs CMD) in such a ' +
    'namespace, where the store\'s files show their owners as the layers have them and `tsbuild mount` mounts stay until the ' +
    'shell ends. Run as root, it runs the command as it is.';
  static override passThroughAfterFirstArg = true;
  static override examples = ['<%= config.bin %> unshare', '<%= config.bin %> unshare --mount CTR=app-working-container sh -c \'ls $CTR\'', '<%= config.bin %> unshare cat /proc/self/uid_map'];
  static override args = {
    command: Args.string({ description: 'command and arguments (default: $SHELL, or /bin/sh)' }),
  };
  static override flags = {
    mount: Flags.string({ description: 'mount working container [VAR=]CONTAINER and put its mount point in $VAR (default: the container name)', multiple: true }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Unshare);
    const env: NodeJS.ProcessEnv = { ...process.env, [USERNS_ENV]: 'session' };
    if (inUserNamespace()) {
      // What buildah unshare sets, so scripts written for it find their way.
      env._CONTAINERS_USERNS_CONFIGURED = 'done';
    }
    for (const m of this.flags.mount ?? []) {
      const eq = m.indexOf('=');
      const name = eq < 0 ? m : m.slice(eq + 1);
      const variable = eq < 0 ? name : m.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(variable)) throw new InvalidArgumentError(`--mount ${m}: ${variable} is not a valid environment variable name (use VAR=CONTAINER)`);
      const wc = await WorkingContainer.open(await this.containerEnv(), name);
      env[variable] = await wc.mount();
    }
    const command = args.command !== undefined ? [args.command, ...this.passThrough] : [process.env.SHELL || '/bin/sh'];
    const child = childProcess().spawn(command[0]!, command.slice(1), { stdio: 'inherit', env });
    // The shell owns the terminal now: its Ctrl-C is its own business.
    const ignore = (): void => {};
    process.on('SIGINT', ignore);
    process.on('SIGQUIT', ignore);
    const status = await new Promise<number>((resolve, reject) => {
      child.on('error', (e) => reject(new InvalidArgumentError(`unshare: cannot run ${command[0]!}: ${e.message}`)));
      child.on('close', (code, signal) => resolve(signal !== null ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1)));
    });
    process.off('SIGINT', ignore);
    process.off('SIGQUIT', ignore);
    if (status !== 0) this.exit(status);
  }
}
