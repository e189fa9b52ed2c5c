import type { RunSpec } from '@tsbuild/runtime';

/** The PATH a container gets when its image sets none (docker's and buildah's default). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Runtime settings a caller may pass through to every container (limits, network, security). */
export type RunDefaults = Omit<Partial<RunSpec>, 'args' | 'env' | 'cwd' | 'user' | 'rootfs' | 'scratchDir'>;
