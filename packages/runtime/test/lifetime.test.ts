import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBusyboxFixture, mountsMentioning, processesWithEnv, waitFor, type Fixture } from './busybox-rootfs.js';

/**
 * kill -9 of tsbuild in the middle of a RUN: a separate Node process (standing in for tsbuild)
 * calls run(), and the test SIGKILLs it. Nothing of the container may survive it.
 */
const runtimeDist = fileURLToPath(new URL('../dist/index.js', import.meta.url));

let fx: Fixture;
beforeAll(() => {
  fx = makeBusyboxFixture();
});
afterAll(() => fx.cleanup());

async function killParentMidRun(script: string, user: { uid: number; gid: number } | undefined): Promise<void> {
  const marker = `TSBUILD_KILL9_TEST=${process.pid}-${Date.now()}-${user?.uid ?? 0}`;
  const { upper, mounts } = fx.overlay();
  const parentScript = join(fx.dir, `parent-${Date.now()}.mjs`);
  writeFileSync(
    parentScript,
    `import { run } from ${JSON.stringify(runtimeDist)};
     await run(${JSON.stringify({ args: ['sh', '-c', script], env: ['PATH=/bin', marker], cwd: '/', rootfs: mounts, scratchDir: fx.scratch(), user })},
               { stdout: 'inherit', stderr: 'inherit' });
     process.exit(42); // never reached: the test kills this process first`,
  );
  const parent = spawn(process.execPath, [parentScript], { stdio: 'ignore' });
  const exited = new Promise((r) => parent.on('exit', (code, sig) => r(sig ?? code)));
  await waitFor('the container processes', () => processesWithEnv(marker).length >= 2);
  expect(mountsMentioning(upper).length).toBeGreaterThan(0);

  parent.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  await waitFor('every container process to die', () => processesWithEnv(marker).length === 0, 5000);
  await waitFor('every mount to go', () => mountsMentioning(upper).length === 0, 5000);
}

describe('lifetime', () => {
  it('kill -9 of the parent mid-run leaves no process and no mount', async () => {
    await killParentMidRun('sleep 1000 & sleep 1000', undefined);
  });

  it('also when the command runs as another user (setuid clears the parent-death signal)', async () => {
    await killParentMidRun('sleep 1000 & sleep 1000', { uid: 1000, gid: 1000 });
  });
});
