import { Command, Flags } from '../cli-kit.js';
import { globalFlags } from '../global-flags.js';
import { cliVersion, gitCommit, goArch } from '../version-info.js';
import { print } from '../print.js';

/**
 * `buildah version`: one `Field: value` line each, or `--json`. It imports nothing beyond the CLI's
 * own modules. The global flags are accepted (`tsbuild --root DIR version`) and mean nothing here.
 */
export default class Version extends Command {
  static override summary = 'Show tsbuild, Node.js and platform versions';
  static override baseFlags = globalFlags;
  static override flags = {
    json: Flags.boolean({ description: 'output in JSON format' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Version);
    const commit = gitCommit();
    const fields: [string, string, string | undefined][] = [
      ['version', 'Version', cliVersion()],
      ['nodeVersion', 'Node Version', process.version],
      ['gitCommit', 'Git Commit', commit],
      ['osArch', 'OS/Arch', `${process.platform}/${goArch()}`],
    ];
    const known = fields.filter((f): f is [string, string, string] => f[2] !== undefined);
    if (flags.json) {
      print(`${JSON.stringify(Object.fromEntries(known.map(([k, , v]) => [k, v])), null, 2)}\n`);
      return;
    }
    print(known.map(([, label, v]) => `${`${label}:`.padEnd(17)}${v}\n`).join(''));
  }
}
