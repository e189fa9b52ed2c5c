import { InvalidArgumentError } from './errors.js';
import type { Platform } from './image-spec.js';

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

/** The platform of this machine in OCI (GOOS/GOARCH) terms. */
export function hostPlatform(): Platform {
  const architecture = GOARCH[process.arch] ?? process.arch;
  const p: Platform = { os: process.platform === 'linux' ? 'linux' : process.platform, architecture };
  if (architecture === 'arm64') p.variant = 'v8';
  return p;
}

/**
 * A platform in the one spelling every comparison, list entry and image config uses, after
 * containerd's platforms.Normalize (platforms/database.go normalizeArch): the architecture names
 * `uname -m` and distributions use are GOARCH names (x86_64 → amd64, aarch64 → arm64, i386 → 386,
 * armhf → arm/v7, armel → arm/v6), a bare digit variant gets its `v`, amd64's v1 is no variant,
 * and the default variants are written out: arm is v7 and arm64 v8 when none is given (as
 * hostPlatform says arm64/v8, and buildah writes `variant: v8` into arm64 configs).
 */
export function normalisePlatform(p: Platform): Platform {
  let os = p.os.toLowerCase();
  if (os === 'macos') os = 'darwin';
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  switch (architecture) {
    case 'i386':
      architecture = '386';
      variant = undefined;
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = undefined;
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === undefined || variant === '8' || variant === 'v8' || variant === 'v8.0') variant = 'v8';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === undefined || variant === '7') variant = 'v7';
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      break;
  }
  const out: Platform = { ...p, os, architecture };
  delete out.variant;
  if (variant !== undefined && variant !== '') out.variant = variant;
  return out;
}

/** containerd's specifier component: letters, digits, `_` and `-` (platforms.go specifierRe). */
const COMPONENT = /^[A-Za-z0-9_-]+$/;

/** Parses `os/arch[/variant]` as docker's --platform takes it, normalised (normalisePlatform). */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !COMPONENT.test(p))) {
    throw new InvalidArgumentError(`invalid platform "${s}": want os/arch[/variant]`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalisePlatform(variant !== undefined ? { os, architecture, variant } : { os, architecture });
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** Whether two platforms are the same once normalised (os.version counts when either has one). */
export function samePlatformAs(a: Platform, b: Platform): boolean {
  return formatPlatform(normalisePlatform(a)) === formatPlatform(normalisePlatform(b)) && (a['os.version'] ?? '') === (b['os.version'] ?? '');
}
