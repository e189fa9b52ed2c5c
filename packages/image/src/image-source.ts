import { parsePlatform, parseReference } from '@tsbuild/oci';
import type { RegistryClient } from '@tsbuild/registry-client';
import type { Image, Store } from '@tsbuild/store';

export const REMOTE_PREFIX = 'docker://';

/** True for `docker://HOST/REPO[:TAG|@DIGEST]`, which inspection reads from the registry. */
export function isRemoteImage(arg: string): boolean {
  return arg.startsWith(REMOTE_PREFIX);
}

/**
 * The image an inspection command names: `docker://REF` is read from the registry (nothing
 * stored), anything else is a name, manifest digest or image ID in the local store.
 */
export async function openImageArg(
  arg: string,
  opts: { store: () => Promise<Store>; client: () => Promise<RegistryClient>; platform?: string },
): Promise<{ image: Image; name: string }> {
  if (isRemoteImage(arg)) {
    const ref = parseReference(arg.slice(REMOTE_PREFIX.length));
    // Loaded here, not at import: the registry client's HTTP stack costs start-up time of every command.
    const { remoteImage } = await import('@tsbuild/registry-client');
    const image = await remoteImage(await opts.client(), ref, opts.platform !== undefined ? { platform: parsePlatform(opts.platform) } : {});
    return { image, name: arg };
  }
  const store = await opts.store();
  const { descriptor } = await store.resolve(arg);
  return { image: store.image(descriptor), name: arg };
}
