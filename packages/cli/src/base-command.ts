import path from 'node:path';
import { Command, Flags, type Interfaces } from '@oclif/core';
import { formatReference, isTsbuildError, parseReference } from '@tsbuild/oci';
import { DEFAULT_ROOT, Store } from '@tsbuild/store';
import { OverlaySnapshotter } from '@tsbuild/snapshotter';

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>;

/**
 * Every command takes `--root` (or TSBUILD_ROOT) and maps tsbuild's typed errors to one line on
 * stderr and exit status 1; oclif's own usage errors keep exit status 2.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override baseFlags = {
    root: Flags.string({
      description: 'store root directory',
      env: 'TSBUILD_ROOT',
      default: DEFAULT_ROOT,
      helpGroup: 'GLOBAL',
    }),
  };

  protected flags!: BaseFlags<T>;
  private storeP?: Promise<Store>;
  private snapshotterP?: Promise<OverlaySnapshotter>;

  /**
   * For `run IMAGE CMD…`: everything after the first argument is the container's command, never
   * tsbuild's flags (docker's rule), and is kept in `passThrough`.
   */
  static passThroughAfterFirstArg = false;
  protected passThrough: string[] = [];

  override async init(): Promise<void> {
    if ((this.ctor as typeof BaseCommand).passThroughAfterFirstArg) {
      const at = firstArgumentIndex(this.argv, { ...this.ctor.flags, ...(this.ctor as typeof BaseCommand).baseFlags });
      if (at >= 0) {
        this.passThrough = this.argv.slice(at + 1);
        this.argv = this.argv.slice(0, at + 1);
      }
    }
    // podman and buildah spell booleans as --tls-verify=false / --layers=true: accept that form.
    const flagDefs: Record<string, { type: string; allowNo?: boolean }> = { ...this.ctor.flags, ...(this.ctor as typeof BaseCommand).baseFlags };
    this.argv = this.argv.map((a) => {
      const m = /^--([a-z][a-z0-9-]*)=(true|false)$/.exec(a);
      const def = m ? flagDefs[m[1]!] : undefined;
      if (!m || def?.type !== 'boolean') return a;
      return m[2] === 'true' ? `--${m[1]}` : def.allowNo ? `--no-${m[1]}` : a;
    });

    await super.init();
    const { flags } = await this.parse({ flags: this.ctor.flags, baseFlags: (this.ctor as typeof BaseCommand).baseFlags, args: this.ctor.args, strict: this.ctor.strict });
    this.flags = flags as BaseFlags<T>;
  }

  protected store(): Promise<Store> {
    this.storeP ??= Store.open(path.resolve(this.flags.root));
    return this.storeP;
  }

  protected snapshotter(): Promise<OverlaySnapshotter> {
    this.snapshotterP ??= OverlaySnapshotter.open(path.join(path.resolve(this.flags.root), 'snapshots'));
    return this.snapshotterP;
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (isTsbuildError(err)) {
      process.stderr.write(`Error: ${err.message}\n`);
      this.exit(1);
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code) && !err.oclif) {
      // A system error that escaped a library: still one line, never a stack trace.
      process.stderr.write(`Error: ${err.message}\n`);
      this.exit(1);
    }
    // oclif's parse errors (unknown flag, missing or unexpected argument, bad option value)
    // carry the parser output in `parse`: those are usage errors.
    if (err.oclif && 'parse' in err) err.oclif.exit = 2;
    return super.catch(err);
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

/** Index of the first positional argument in argv, skipping flags and the values they take. */
export function firstArgumentIndex(argv: string[], flags: Record<string, { type: string; char?: string }>): number {
  const byName = new Map(Object.entries(flags));
  const byChar = new Map(Object.values(flags).filter((f) => f.char).map((f) => [f.char!, f]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (a.startsWith('--')) {
      if (!a.includes('=') && byName.get(a.slice(2))?.type === 'option') i++;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      // -it, -m 64m, -m64m
      const chars = a.slice(1);
      for (let k = 0; k < chars.length; k++) {
        if (byChar.get(chars[k]!)?.type === 'option') {
          if (k === chars.length - 1) i++;
          break;
        }
      }
      continue;
    }
    return i;
  }
  return -1;
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
