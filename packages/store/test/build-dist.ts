import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** Child processes import the built package: build it (incrementally) first. */
export async function buildDist(): Promise<void> {
  const repo = fileURLToPath(new URL('../../../', import.meta.url));
  await promisify(execFile)(`${repo}node_modules/.bin/tsc`, ['-b', 'packages/store'], { cwd: repo });
}

export const helper = (name: string): string => fileURLToPath(new URL(`./helpers/${name}`, import.meta.url));
