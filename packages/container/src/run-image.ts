import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { type ImageConfig, InvalidArgumentError } from '@tsbuild/oci';
import type { Store } from '@tsbuild/store';
import { type OverlaySnapshotter, unpack } from '@tsbuild/snapshotter';
import type { RunResult, RunSpec } from '@tsbuild/runtime';
import { DEFAULT_PATH } from './defaults.js';
import { resolveUser } from './user.js';

/** Runtime settings a caller may pass through to every container (limits, network, security). */
export type RunDefaults = Omit<Partial<RunSpec>, 'args' | 'env' | 'cwd' | 'user' | 'rootfs' | 'scratchDir'>;

export interface RunImageOptions {
  store: Store;
  snapshotter: OverlaySnapshotter;
  image: string;
  /** Replaces the image's Cmd (docker's `run IMAGE CMD…`). */
  command?: string[];
  /** Replaces the image's Entrypoint (an empty string clears it). */
  entrypoint?: string;
  env?: string[];
  workdir?: string;
  user?: string;
  /** Remove the container's snapshot afterwards; otherwise it stays (listed by `tsbuild snapshots`, removed by prune). */
  rm?: boolean;
  stdin?: 'inherit' | 'ignore' | Readable;
  stdout?: Writable | 'inherit';
  stderr?: Writable | 'inherit';
  /** A pseudo-terminal for the command (run -t): see RunIO.terminal of @tsbuild/runtime. */
  terminal?: { sizeFrom?: NodeJS.WriteStream };
  runtime?: RunDefaults;
  signal?: AbortSignal;
}

/**
 * `tsbuild run`: a container from an image, through the same runtime path as a RUN step. The
 * container's changes land in an active snapshot named `run-<id>`.
 */
export async function runImage(opts: RunImageOptions): Promise<RunResult & { container: string }> {
  const { store, snapshotter } = opts;
  const { descriptor } = await store.resolve(opts.image);
  const img = store.image(descriptor);
  const [config, layers] = (await Promise.all([img.config(), img.layers()])) as [ImageConfig, Awaited<ReturnType<typeof img.layers>>];
  const c = config.config ?? {};
  const entrypoint = opts.entrypoint !== undefined ? (opts.entrypoint === '' ? [] : [opts.entrypoint]) : (c.Entrypoint ?? []);
  const cmd = opts.command && opts.command.length > 0 ? opts.command : opts.entrypoint !== undefined ? [] : (c.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new InvalidArgumentError(`no command given and image ${opts.image} has neither Entrypoint nor Cmd`);
  const env = new Map<string, string>();
  for (const kv of [...(c.Env ?? []), ...(opts.env ?? [])]) {
    const eq = kv.indexOf('=');
    if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
    else if (process.env[kv] !== undefined) env.set(kv, process.env[kv]!); // docker: -e NAME takes the host's value
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  return store.withLock('shared', async () => {
    const parent = await unpack(snapshotter, layers.map((l) => ({ diffID: l.diffID, open: () => l.compressed() })));
    const id = randomBytes(6).toString('hex');
    const key = `run-${id}`;
    const mounts = await snapshotter.prepare(key, parent);
    const scratch = path.join(store.root, 'tmp', key);
    try {
      const { home, ...user } = await resolveUser(snapshotter, parent, opts.user ?? c.User ?? '');
      // HOME from the user's passwd entry when the environment has none, as runc (and so docker
      // and podman) give it, and as a RUN step gets it.
      if (!env.has('HOME')) env.set('HOME', home ?? '/');
      const { run } = await import('@tsbuild/runtime');
      const res = await run(
        {
          ...opts.runtime,
          args,
          env: [...env].map(([k, v]) => `${k}=${v}`),
          // The config keeps WORKDIR as written (`/x/../y/`); the process starts in the clean path.
          cwd: path.posix.resolve('/', opts.workdir ?? (c.WorkingDir || '/')),
          user,
          rootfs: mounts,
          scratchDir: scratch,
          hostname: opts.runtime?.hostname ?? id,
        },
        { stdin: opts.stdin ?? 'ignore', stdout: opts.stdout ?? 'inherit', stderr: opts.stderr ?? 'inherit', ...(opts.terminal !== undefined ? { terminal: opts.terminal } : {}) },
        opts.signal,
      );
      return { ...res, container: key };
    } finally {
      await fsp.rm(scratch, { recursive: true, force: true });
      if (opts.rm) await snapshotter.remove(key).catch(() => undefined);
    }
  });
}

