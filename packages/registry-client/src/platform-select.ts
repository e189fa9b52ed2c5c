import type { Descriptor, Platform } from '@tsbuild/oci';

/**
 * ARM variants a CPU of a variant also runs, best first (containerd's platform matcher: an armv7
 * machine runs v7, v6 and v5 images; arm64 is v8, and an image without a variant is v8 too).
 */
function acceptedVariants(p: Platform): (string | undefined)[] {
  if (p.architecture === 'arm64') return p.variant === undefined || p.variant === 'v8' ? ['v8', undefined] : [p.variant, 'v8', undefined];
  if (p.architecture === 'arm') {
    const v = Number((p.variant ?? 'v7').slice(1));
    const out: (string | undefined)[] = [];
    for (let i = v; i >= 5; i--) out.push(`v${i}`);
    return [...out, undefined];
  }
  return p.variant !== undefined ? [p.variant, undefined] : [undefined];
}

/**
 * The manifest of an index for a platform: same os and architecture, the best variant the
 * platform runs. Entries without a platform or for `unknown/unknown` (attestations that
 * buildkit puts in indexes) are never chosen. undefined when nothing fits.
 */
export function selectPlatform(manifests: Descriptor[], want: Platform): Descriptor | undefined {
  const candidates = manifests.filter((m) => m.platform !== undefined && m.platform.os === want.os && m.platform.architecture === want.architecture);
  for (const v of acceptedVariants(want)) {
    const hit = candidates.find((m) => m.platform?.variant === v);
    if (hit !== undefined) return hit;
  }
  // A platform without a variant asked for takes any variant of its architecture.
  return want.variant === undefined ? candidates[0] : undefined;
}
