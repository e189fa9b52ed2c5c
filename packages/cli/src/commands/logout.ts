import { Args, Flags } from '../cli-kit.js';
import { logout } from '@tsbuild/registry-client';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Logout extends BaseCommand<typeof Logout> {
  static override summary = 'Remove the stored credentials of a registry';
  static override args = { registry: Args.string({ description: 'registry host[:port]', required: true }) };
  static override flags = { authfile: Flags.string({ description: 'auth file to change', env: 'REGISTRY_AUTH_FILE' }) };

  async run(): Promise<void> {
    const { args } = await this.parse(Logout);
    await logout(args.registry, { ...(this.flags.authfile ? { authFile: this.flags.authfile } : {}) });
    print(`Removed login credentials for ${args.registry}\n`);
  }
}
