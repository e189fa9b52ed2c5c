import { Flags } from './cli-kit.js';
import type { ProgressEvent, RegistryClient } from '@tsbuild/registry-client';
import { shortId } from '@tsbuild/oci';
import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import { humanSize } from './base-command.js';

/** The registry flags of podman and buildah: TLS, certificates, credentials. */
export const registryFlags = {
  'tls-verify': Flags.boolean({ description: 'require HTTPS and verify certificates (--tls-verify=false for http or self-signed registries)', allowNo: true, helpGroup: 'REGISTRY' }),
  'cert-dir': Flags.string({ description: 'directory with ca.crt and client certificates (per host:port subdirectories)', helpGroup: 'REGISTRY' }),
  creds: Flags.string({ description: 'credentials USER[:PASSWORD] for the registry', helpGroup: 'REGISTRY' }),
  authfile: Flags.string({ description: 'auth file (default ${XDG_RUNTIME_DIR}/containers/auth.json, then ~/.docker/config.json)', env: 'REGISTRY_AUTH_FILE', helpGroup: 'REGISTRY' }),
  'registry-timeout': Flags.integer({
    description: 'fail a registry request after this many seconds without progress (default 60)',
    min: 1,
    helpGroup: 'REGISTRY',
  }),
};

export interface RegistryFlagValues {
  'tls-verify'?: boolean;
  'cert-dir'?: string;
  creds?: string;
  authfile?: string;
  'registry-timeout'?: number;
}

/** The client for these flags; the registry client and its HTTP stack load only when one is needed. */
export async function registryClient(f: RegistryFlagValues, onProgress?: (e: ProgressEvent) => void): Promise<RegistryClient> {
  const { RegistryClient, authFileProvider } = await import('@tsbuild/registry-client');
  return new RegistryClient({
    auth: authFileProvider({ ...(f.authfile ? { authFile: f.authfile } : {}), ...(f.creds ? { creds: f.creds } : {}) }),
    ...(f['tls-verify'] !== undefined ? { tlsVerify: f['tls-verify'] } : {}),
    ...(f['cert-dir'] ? { certDir: f['cert-dir'] } : {}),
    ...(f['registry-timeout'] !== undefined ? { timeoutMs: f['registry-timeout'] * 1000 } : {}),
    ...(onProgress ? { onProgress } : {}),
  });
}

/**
 * Per-blob progress: bars on a terminal (bytes, rate, "compressing", "exists", "mounted", "done"),
 * one plain line per blob and phase otherwise, nothing with --quiet. Written to stderr, as podman does.
 */
export class ProgressPrinter {
  private readonly bars?: cliProgress.MultiBar;
  private readonly byDigest = new Map<string, cliProgress.SingleBar>();
  private readonly lastPhase = new Map<string, string>();
  private stopped = false;

  constructor(private readonly mode: 'tty' | 'plain' | 'quiet') {
    if (mode === 'tty') {
      // Loaded for a terminal only: piped and quiet runs never pay for it.
      const bars = createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
      this.bars = new bars.MultiBar(
        {
          format: '{id} [{bar}] {value_h}/{total_h} {phase}',
          hideCursor: true,
          clearOnComplete: false,
          stream: process.stderr,
          formatValue: (v, _o, type) => (type === 'value' || type === 'total' ? humanSize(v) : String(v)),
        },
        bars.Presets.shades_classic,
      );
    }
  }

  static forStream(quiet: boolean): ProgressPrinter {
    return new ProgressPrinter(quiet ? 'quiet' : process.stderr.isTTY ? 'tty' : 'plain');
  }

  readonly onProgress = (e: ProgressEvent): void => {
    if (this.mode === 'quiet') return;
    const id = shortId(e.digest);
    if (this.bars) {
      let bar = this.byDigest.get(e.digest);
      if (!bar) {
        bar = this.bars.create(Math.max(e.total, 1), 0, { id, phase: e.phase, value_h: '0B', total_h: humanSize(e.total) });
        this.byDigest.set(e.digest, bar);
      }
      const value = e.phase === 'exists' || e.phase === 'mounted' || e.phase === 'done' || e.phase === 'compressed' ? Math.max(e.total, 1) : e.current;
      bar.update(value, { phase: e.phase, value_h: humanSize(e.current), total_h: humanSize(e.total) });
      return;
    }
    // Plain output: a line when a blob changes phase, never per chunk.
    if (this.lastPhase.get(e.digest) === e.phase) return;
    this.lastPhase.set(e.digest, e.phase);
    if (e.phase === 'downloading' || e.phase === 'uploading' || e.phase === 'waiting') return;
    if (e.phase === 'compressing') {
      process.stderr.write(`Compressing layer ${id} (${humanSize(e.total)})\n`);
      return;
    }
    const verb = { done: 'Copied', exists: 'Exists', mounted: 'Mounted', compressed: 'Compressed' }[e.phase];
    process.stderr.write(`${verb} ${e.phase === 'compressed' ? 'layer' : 'blob'} ${id} (${humanSize(e.total)})\n`);
  };

  /** Ends the bars; once only (a second stop of cli-progress moves the cursor up over what was printed since). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bars?.stop();
  }
}
