import path from 'node:path';
import { formatReference, isTsbuildError, parseReference } from '@tsbuild/oci';
import { Store, defaultStoreRoot } from '@tsbuild/store';
import type { OverlaySnapshotter } from '@tsbuild/snapshotter';
import type { ContainerEnv } from '@tsbuild/container';
import type { RegistryClient } from '@tsbuild/registry-client';
import { CliError, Command, Flags, type InferredFlags } from './cli-kit.js';
import { globalFlags } from './global-flags.js';

export type BaseFlags<T extends typeof Command> = InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>;

/**
 * Every command takes the global flags (`--root` or TSBUILD_ROOT; global-flags.ts), before or
 * after the command's name, and maps tsbuild's typed errors to one line on
 * stderr and exit status 1; usage errors exit with status 2.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override baseFlags = {
    ...globalFlags,
    root: Flags.string({ ...globalFlags.root, default: defaultStoreRoot() }),
  };

  protected flags!: BaseFlags<T>;
  private storeP?: Promise<Store>;
  private snapshotterP?: Promise<OverlaySnapshotter>;

  override async init(): Promise<void> {
    await super.init();
    this.flags = this.parsed!.flags as BaseFlags<T>;
  }

  private get root(): string {
    return (this.flags as { root: string }).root;
  }

  protected store(): Promise<Store> {
    this.storeP ??= Store.open(path.resolve(this.root));
    return this.storeP;
  }

  /** Loaded on first use: push, pull, images and the like never load the snapshotter. */
  protected snapshotter(): Promise<OverlaySnapshotter> {
    this.snapshotterP ??= import('@tsbuild/snapshotter').then((m) => m.OverlaySnapshotter.open(path.join(path.resolve(this.root), 'snapshots')));
    return this.snapshotterP;
  }

  /**
   * What working containers need; with `registry`, the client for the pulls `from` or
   * `copy --from` may have to make (made only then, and closed by `close`).
   */
  protected async containerEnv(registry?: () => Promise<RegistryClient>): Promise<ContainerEnv & { close(): Promise<void> }> {
    const [store, snapshotter] = await Promise.all([this.store(), this.snapshotter()]);
    let client: Promise<RegistryClient> | undefined;
    return {
      store,
      snapshotter,
      ...(registry ? { registry: () => (client ??= registry()) } : {}),
      close: async () => {
        if (client) await (await client).close();
      },
    };
  }

  protected override async catch(err: Error): Promise<unknown> {
    if (isTsbuildError(err)) throw new CliError(err.message, 1, { cause: err });
    const code = (err as NodeJS.ErrnoException).code;
    // A system error that escaped a library: still one line, never a stack trace.
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) throw new CliError(err.message, 1, { cause: err });
    throw err;
  }
}

/** An image argument as the store names it, or undefined when it is not a name (an image ID). */
export function normalisedName(image: string): string | undefined {
  try {
    return formatReference(parseReference(image));
  } catch {
    return undefined;
  }
}

/** Sizes as docker prints them: 1000-based units, three significant digits. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toPrecision(3)}${units[u]}`;
}

/** "5 minutes ago" style ages, as `docker images` shows CREATED. */
export function humanAge(iso: string | undefined, now = Date.now()): string {
  if (!iso) return 'N/A';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const steps: [number, string][] = [[60, 'second'], [60, 'minute'], [24, 'hour'], [7, 'day'], [4.35, 'week'], [12, 'month'], [Infinity, 'year']];
  let v = s;
  for (const [n, unit] of steps) {
    if (v < n) return v <= 1 && unit === 'second' ? 'Less than a second ago' : `${Math.floor(v)} ${unit}${Math.floor(v) === 1 ? '' : 's'} ago`;
    v /= n;
  }
  return 'long ago';
}

/** Column-aligned table for terminal output. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('').trimEnd()).join('\n') + '\n';
}
