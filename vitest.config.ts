import { defineConfig } from 'vitest/config';

// Integration tests need root, the kernel and real registries; they run in CI as root.
// Each test file gets its own process: tests chdir, mount and spawn helpers.
export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
