import type { RunSpec } from '@tsbuild/runtime';

/** Runtime settings a caller may pass through to every container (limits, network, security). */
export type RunDefaults = Omit<Partial<RunSpec>, 'args' | 'env' | 'cwd' | 'user' | 'rootfs' | 'scratchDir'>;
