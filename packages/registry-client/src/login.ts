import { storeCredentials } from './auth-provider.js';
import { RegistryClient, type RegistryClientOptions } from './registry-client.js';
import { staticAuthProvider } from './auth-provider.js';

/**
 * `login`: verifies the credentials against the registry (GET /v2/ through its auth flow, so a
 * token server must accept them too), then stores them in the auth file
 * (${XDG_RUNTIME_DIR:-/run/user/<uid>}/containers/auth.json by default, mode 0600).
 */
export async function login(
  registry: string,
  creds: { username: string; password: string },
  opts: { authFile?: string; client?: Omit<RegistryClientOptions, 'auth'> } = {},
): Promise<void> {
  const client = new RegistryClient({ ...opts.client, auth: staticAuthProvider(creds) });
  try {
    await client.ping(registry);
  } finally {
    await client.close();
  }
  await storeCredentials(registry, creds, opts.authFile !== undefined ? { authFile: opts.authFile } : {});
}
