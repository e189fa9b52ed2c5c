import { readFileSync } from 'node:fs';

// Set by scripts/bundle.mjs (esbuild's define) when it bundles the CLI; absent when dist/ runs
// unbundled (the unit tests), where the version comes from package.json and the commit is unknown.
declare const TSBUILD_VERSION: string | undefined;
declare const TSBUILD_GIT_COMMIT: string | undefined;

/** tsbuild's version: the CLI package's. */
export function cliVersion(): string {
  if (typeof TSBUILD_VERSION === 'string') return TSBUILD_VERSION;
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The git commit the bundle was built from (with -dirty for uncommitted changes), when known. */
export function gitCommit(): string | undefined {
  return typeof TSBUILD_GIT_COMMIT === 'string' && TSBUILD_GIT_COMMIT !== '' ? TSBUILD_GIT_COMMIT : undefined;
}

/**
 * Node's process.arch as Go (and so buildah, podman and the OCI image spec's platform) names it:
 * `buildah version` says linux/amd64, not linux/x64.
 */
export function goArch(arch: string = process.arch): string {
  return ({ x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips64el: 'mips64le' } as Record<string, string>)[arch] ?? arch;
}
