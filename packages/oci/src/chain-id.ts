import { crypto } from './lazy-builtins.js';
import type { Digest } from './digest.js';

/**
 * ChainID of a stack of layers (image-spec config.md): ChainID(L0) = DiffID(L0);
 * ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln)). Snapshots of unpacked
 * layers are keyed by it, so images that share base layers share them on disk.
 */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : sha256Of(`${prev} ${d}`));
  }
  return out;
}

export function chainId(diffIds: readonly Digest[]): Digest | undefined {
  return chainIds(diffIds).at(-1);
}

/** sha256 digest of a small in-memory value (manifests, configs, keys). */
export function sha256Of(data: string | Uint8Array): Digest {
  return `sha256:${crypto().createHash('sha256').update(data).digest('hex')}`;
}
