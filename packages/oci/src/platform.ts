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

/** Parses `os/arch[/variant]` as docker's --platform takes it. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p.length === 0)) {
    throw new InvalidArgumentError(`invalid platform "${s}": want os/arch[/variant]`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant !== undefined ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}
