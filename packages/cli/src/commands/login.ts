import { Args, Flags } from '../cli-kit.js';
import { text } from 'node:stream/consumers';
import { InvalidArgumentError } from '@tsbuild/oci';
import { login } from '@tsbuild/registry-client';
import { BaseCommand } from '../base-command.js';
import { print } from '../print.js';

export default class Login extends BaseCommand<typeof Login> {
  static override summary = 'Log in to a registry (credentials go to ${XDG_RUNTIME_DIR}/containers/auth.json, as podman keeps them)';
  static override examples = ['echo "$TOKEN" | <%= config.bin %> login -u ci --password-stdin registry.example'];
  static override args = { registry: Args.string({ description: 'registry host[:port]', required: true }) };
  static override flags = {
    username: Flags.string({ char: 'u', description: 'user name' }),
    password: Flags.string({ char: 'p', description: 'password (prefer --password-stdin: arguments show in ps)' }),
    'password-stdin': Flags.boolean({ description: 'read the password from stdin' }),
    authfile: Flags.string({ description: 'auth file to write', env: 'REGISTRY_AUTH_FILE' }),
    'tls-verify': Flags.boolean({ description: 'require HTTPS and verify certificates', allowNo: true }),
    'cert-dir': Flags.string({ description: 'directory with ca.crt and client certificates' }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Login);
    const f = this.flags;
    if (!f.username) throw new InvalidArgumentError('login needs --username');
    let password = f.password;
    if (f['password-stdin']) password = (await text(process.stdin)).replace(/\r?\n$/, '');
    if (password === undefined) throw new InvalidArgumentError('login needs --password or --password-stdin');
    await login(args.registry, { username: f.username, password }, {
      ...(f.authfile ? { authFile: f.authfile } : {}),
      client: { ...(f['tls-verify'] !== undefined ? { tlsVerify: f['tls-verify'] } : {}), ...(f['cert-dir'] ? { certDir: f['cert-dir'] } : {}) },
    });
    print('Login Succeeded!\n');
  }
}
