import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { type ImageConfig, InvalidArgumentError, type Platform } from '@tsbuild/oci';
import type { Store } from '@tsbuild/store';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';
import type { RunResult } from '@tsbuild/runtime';
import type { RegistryClient } from '@tsbuild/registry-client';
import { randomHex } from '@tsbuild/linux';
import { type PullPolicy, storedOrPulled } from './pull-image.js';
import { ImageState } from './image-state.js';
import { type ContainerRunOptions, WorkingContainer } from './working-container.js';

export type { RunDefaults } from './defaults.js';

/** `tsbuild run IMAGE`: the image, its command, and what `run` of a working container takes. */
export interface RunImageOptions extends Omit<ContainerRunOptions, 'addHistory' | 'mounts' | 'hostname'> {
  store: Store;
  snapshotter: OverlaySnapshotter;
  image: string;
  /** Replaces the image's Cmd (docker's `run IMAGE CMD…`). */
  command?: string[];
  /** Replaces the image's Entrypoint (an empty string clears it). */
  entrypoint?: string;
  /** Remove the container's snapshot afterwards; otherwise it stays (listed by `tsbuild snapshots`, removed by prune). */
  rm?: boolean;
  /** The platform whose image to run from a manifest list, or to pull (podman's `run --platform`). */
  platform?: Platform;
  /** With `platform`: when to pull (default missing: the store lacks that platform's image), through `registry`. */
  pull?: PullPolicy;
  registry?: () => Promise<RegistryClient>;
}

/**
 * `tsbuild run IMAGE`: a container from an image, through the same path as `tsbuild run CONTAINER`
 * and a RUN step (WorkingContainer's exec). The container's changes land in an active snapshot
 * whose key starts with `run-<id>`; it stays (listed by `tsbuild snapshots`, removed by prune)
 * unless `rm`.
 */
export async function runImage(opts: RunImageOptions): Promise<RunResult & { container: string }> {
  const { store, snapshotter } = opts;
  const descriptor =
    opts.platform === undefined
      ? (await store.resolve(opts.image)).descriptor
      : await storedOrPulled(store, opts.image, opts.pull ?? 'missing', opts.registry, `image ${opts.image}`, opts.platform);
  const img = store.image(descriptor);
  const [config, layers] = (await Promise.all([img.config(), img.layers()])) as [ImageConfig, Awaited<ReturnType<typeof img.layers>>];
  const c = config.config ?? {};
  const entrypoint = opts.entrypoint !== undefined ? (opts.entrypoint === '' ? [] : [opts.entrypoint]) : (c.Entrypoint ?? []);
  const cmd = opts.command && opts.command.length > 0 ? opts.command : opts.entrypoint !== undefined ? [] : (c.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new InvalidArgumentError(`no command given and image ${opts.image} has neither Entrypoint nor Cmd`);
  return store.withLock('shared', async () => {
    const id = randomHex(6);
    const scratch = path.join(store.root, 'tmp', `run-${id}`);
    const state = ImageState.from(config, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })));
    const wc = WorkingContainer.forBuild({ store, snapshotter }, state, { keyPrefix: `run-${id}`, scratch });
    try {
      const res = await wc.run(args, {
        ...(opts.env ? { env: opts.env } : {}),
        ...(opts.workdir !== undefined ? { workdir: opts.workdir } : {}),
        ...(opts.user !== undefined ? { user: opts.user } : {}),
        hostname: opts.runtime?.hostname ?? id,
        stdin: opts.stdin ?? 'ignore',
        stdout: opts.stdout ?? 'inherit',
        stderr: opts.stderr ?? 'inherit',
        ...(opts.terminal !== undefined ? { terminal: opts.terminal } : {}),
        ...(opts.runtime ? { runtime: opts.runtime } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.started ? { started: opts.started } : {}),
      });
      return { ...res, container: wc.snapshotKey };
    } finally {
      await fsp.rm(scratch, { recursive: true, force: true });
      if (opts.rm) await wc.discard();
    }
  });
}
