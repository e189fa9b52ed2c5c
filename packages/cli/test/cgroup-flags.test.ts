import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestStore, processesMatching } from './harness.js';

/** The host-side v1 cgroup directory of `pid` for `controller` (this machine is v1 hybrid). */
function cgroupDir(pid: string, controller: string): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
  return `/sys/fs/cgroup/${controller}${line?.split(':')[2] ?? '?'}`;
}

describe('cgroup flags (issue 20) on build and run', () => {
  const t = new TestStore();
  beforeAll(() => t.importBusybox());
  afterAll(() => t.cleanup());

  it('build: every RUN gets --cgroup-parent, --memory-reservation, --memory-swappiness and the devices cgroup', async () => {
    const parent = `/tsbuild-cli-test-${process.pid}`;
    const tag = `${process.pid}${Date.now() % 100000}`;
    const ctx = await t.context({
      Dockerfile: `FROM busybox\nRUN mknod /k c 1 11 && if (true > /k) 2>/dev/null; then echo open > /dev-result; else echo denied > /dev-result; fi; rm /k\nRUN sleep 3.${tag}\n`,
    });
    const child = t.spawn(['build', '-q', '-t', 'cg', '--cgroup-parent', parent, '--memory', '64m', '--memory-reservation', '32m', '--memory-swappiness', '7', ctx]);
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let sleeper: string | undefined;
    for (let i = 0; i < 300 && sleeper === undefined; i++) {
      sleeper = processesMatching(`sleep 3.${tag}`)[0]?.trim().split(/\s+/)[0];
      if (sleeper === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(sleeper).toBeDefined();
    const memory = cgroupDir(sleeper!, 'memory');
    expect(memory).toMatch(new RegExp(`^/sys/fs/cgroup/memory${parent}/tsbuild-\\d+-[0-9a-f]+$`));
    expect(readFileSync(`${memory}/memory.swappiness`, 'utf8').trim()).toBe('7');
    expect(readFileSync(`${memory}/memory.soft_limit_in_bytes`, 'utf8').trim()).toBe(String(32 * 1024 * 1024));
    expect(cgroupDir(sleeper!, 'devices')).toMatch(new RegExp(`^/sys/fs/cgroup/devices${parent}/tsbuild-`));
    expect(await exited).toBe(0);
    expect((await t.run(['run', '--rm', 'cg', 'cat', '/dev-result'])).stdout).toBe('denied\n');
    // The parent levels the runs made went with them.
    for (const h of ['memory', 'devices', 'unified']) expect(existsSync(`/sys/fs/cgroup/${h}${parent}`), h).toBe(false);
  });

  it('bad values are one line naming the flag, exit 1, before any container or cgroup is made', async () => {
    const before = (await t.run(['containers', '--format', 'json'])).stdout;
    const cases: [string[], RegExp][] = [
      [['run', '--rm', '--memory-swappiness', '101', 'busybox', 'true'], /^Error: --memory-swappiness must be an integer from 0 to 100: 101\n$/],
      [['run', '--rm', '--device-write-bps', '/dev/null:1mb', 'busybox', 'true'], /^Error: --device-write-bps \/dev\/null:1mb: \/dev\/null is not a block device\n$/],
      [['run', '--rm', '--blkio-weight', '5', 'busybox', 'true'], /^Error: --blkio-weight must be an integer from 10 to 1000: 5\n$/],
      [['from', '--cgroup-parent', 'relative/path', 'busybox'], /^Error: --cgroup-parent must be an absolute path inside the cgroup hierarchy, without \. or \.\. \(e\.g\. \/builds\): relative\/path\n$/],
    ];
    for (const [args, re] of cases) {
      const r = await t.run(args);
      expect(r.stderr, args.join(' ')).toMatch(re);
      expect(r.code, args.join(' ')).toBe(1);
    }
    expect((await t.run(['containers', '--format', 'json'])).stdout).toBe(before);
  });
});
