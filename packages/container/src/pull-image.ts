import { CancelledError, type Descriptor, NotFoundError, TsbuildError, UnavailableError, parseReference } from '@tsbuild/oci';
import type { Store } from '@tsbuild/store';
import type { RegistryClient } from '@tsbuild/registry-client';

/** buildah's --pull: missing (pull when the store lacks the image), always, never. */
export type PullPolicy = 'missing' | 'always' | 'never';

/**
 * The manifest descriptor of the image `name`: from the store, or pulled as `pull` says (`FROM`,
 * `COPY --from`, `tsbuild from`, `copy --from`). Errors begin with `what`, the thing that wanted
 * the image; a failed pull keeps its kind (see registryFailure).
 */
export async function storedOrPulled(store: Store, name: string, pull: PullPolicy, registry: (() => Promise<RegistryClient>) | undefined, what: string): Promise<Descriptor> {
  if (pull !== 'always') {
    try {
      return (await store.resolve(name)).descriptor;
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      if (pull === 'never') throw new NotFoundError(`${what}: image not known in the local store (and --pull=never)`);
    }
  }
  let ref;
  try {
    ref = parseReference(name);
  } catch {
    throw new NotFoundError(`${what}: image not known in the local store, and "${name}" is not a reference to pull`);
  }
  if (!registry) throw new NotFoundError(`${what}: image not known in the local store`);
  const rc = await import('@tsbuild/registry-client');
  try {
    return (await rc.pull(await registry(), store, ref)).descriptor;
  } catch (e) {
    throw registryFailure(e, `${what}: not in the local store, and pulling it failed: ${(e as Error).message}`);
  }
}

/**
 * A registry operation's failure told as `message`, its kind kept; an untyped one (a refused
 * connection) is the registry being unavailable. A cancellation comes back as it is.
 */
export function registryFailure(e: unknown, message: string): unknown {
  if (e instanceof CancelledError) return e;
  const Kind = (e instanceof TsbuildError ? e.constructor : UnavailableError) as new (message: string, options?: { cause?: unknown }) => TsbuildError;
  return new Kind(message, { cause: e });
}
