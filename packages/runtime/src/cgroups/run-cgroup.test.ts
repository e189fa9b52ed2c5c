import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cpuSharesToWeight, v1Writes, v2Writes } from './cgroup-resources.js';
import { cgroupLayout, createRunCgroup, delegatedCgroup, pidNamespaceTag } from './run-cgroup.js';

/**
 * cgroup v2 limits cannot be enforced on the test machine (its unified hierarchy has no
 * controllers), so the v2 code runs against a directory shaped like a v2 root: the files it
 * writes are the contract, checked here; the v1 path is tested for real in test/resources.test.ts.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fakeV2Root(controllers = 'cpuset cpu io memory hugetlb pids rdma misc'): string {
  const root = mkdtempSync(join(tmpdir(), 'tsbuild-fake-cgroup2-'));
  dirs.push(root);
  writeFileSync(join(root, 'cgroup.controllers'), `${controllers}\n`);
  writeFileSync(join(root, 'cgroup.subtree_control'), 'memory\n');
  return root;
}

describe('cgroup v2 files (fake tree)', () => {
  it('rootless: the runs go under the highest cgroup above ours that the user owns (systemd Delegate=yes), and there is none without one', async () => {
    const root = fakeV2Root();
    const user = 4242;
    const svc = join(root, 'user.slice/user-4242.slice/user@4242.service');
    const scope = join(svc, 'app.slice/build.scope');
    mkdirSync(scope, { recursive: true });
    for (const d of [join(root, 'user.slice'), join(root, 'user.slice/user-4242.slice'), svc, join(svc, 'app.slice'), scope]) {
      writeFileSync(join(d, 'cgroup.procs'), '');
      writeFileSync(join(d, 'cgroup.controllers'), 'cpu memory pids\n');
      writeFileSync(join(d, 'cgroup.subtree_control'), 'cpu memory pids\n');
    }
    for (const d of [svc, join(svc, 'app.slice'), scope]) for (const f of ['', 'cgroup.procs']) chownSync(join(d, f), user, user);
    const self = '/user.slice/user-4242.slice/user@4242.service/app.slice/build.scope';
    expect(delegatedCgroup(root, self, user)).toBe(svc);
    expect(delegatedCgroup(root, self, 1000)).toBeUndefined();
    // A cgroup.procs left to root (not delegated) stops the walk even in a directory we own.
    chownSync(join(svc, 'cgroup.procs'), 0, 0);
    expect(delegatedCgroup(root, self, user)).toBe(join(svc, 'app.slice'));
    // The run's cgroup and its limits go under it.
    const cg = await createRunCgroup({ memory: 32 * 1024 * 1024, pidsLimit: 10 }, join(svc, 'app.slice'));
    expect(cg.dirs).toEqual([join(svc, 'app.slice', 'tsbuild', cg.name)]);
    expect(readFileSync(join(cg.dirs[0]!, 'pids.max'), 'utf8')).toBe('10');
  });

  it('creates tsbuild/tsbuild-<pid>-<hex>, enables the controllers and writes every limit', async () => {
    const root = fakeV2Root();
    expect(cgroupLayout(root).version).toBe(2);
    const cg = await createRunCgroup({ memory: 64 * 1024 * 1024, cpus: 0.25, cpuShares: 1024, cpusetCpus: '0', pidsLimit: 20 }, root);
    expect(cg.name).toMatch(new RegExp(`^tsbuild-${process.pid}-${pidNamespaceTag()}[0-9a-f]{8}$`));
    const dir = join(root, 'tsbuild', cg.name);
    expect(cg.dirs).toEqual([dir]);
    expect(cg.procsFiles).toEqual([join(dir, 'cgroup.procs')]);
    const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
    expect(read('memory.max')).toBe(String(64 * 1024 * 1024));
    expect(read('memory.swap.max')).toBe(String(64 * 1024 * 1024)); // docker: swap defaults to memory
    expect(read('cpu.max')).toBe('25000 100000');
    expect(read('cpu.weight')).toBe('100');
    expect(read('cpuset.cpus')).toBe('0');
    expect(read('pids.max')).toBe('20');
    // memory was enabled already at the root; the others are added there and in the parent
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +cpuset +pids');
    expect(readFileSync(join(root, 'tsbuild', 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +cpuset +memory +pids');
  });

  it('reads an OOM kill from memory.events', async () => {
    const root = fakeV2Root();
    const cg = await createRunCgroup({ memory: 64 * 1024 * 1024 }, root);
    const events = join(root, 'tsbuild', cg.name, 'memory.events');
    writeFileSync(events, 'low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n');
    expect(cg.oomKilled()).toBe(false);
    writeFileSync(events, 'low 0\nhigh 0\nmax 40\noom 2\noom_kill 1\noom_group_kill 0\n');
    expect(cg.oomKilled()).toBe(true);
  });

  it('refuses limits whose controller the hierarchy lacks, naming it', async () => {
    const root = fakeV2Root('cpu io');
    await expect(createRunCgroup({ pidsLimit: 5 }, root)).rejects.toThrow(/controller\(s\) pids not available in .*cgroup.controllers/);
  });

  it('unlimited values: memorySwap -1 and pidsLimit 0 write max', () => {
    expect(v2Writes({ memory: 1 << 26, memorySwap: -1, pidsLimit: 0 })).toEqual([
      ['memory.max', String(1 << 26)],
      ['memory.swap.max', 'max'],
      ['pids.max', 'max'],
    ]);
    expect(v2Writes({ memory: 1 << 26, memorySwap: 3 << 26 })).toContainEqual(['memory.swap.max', String(2 << 26)]);
  });
});

describe('cgroup v1 files', () => {
  it('memory before memsw, memsw = 2x memory by default, and no memsw without swap accounting', () => {
    expect(v1Writes({ memory: 100 }, true).get('memory')).toEqual([
      ['memory.limit_in_bytes', '100'],
      ['memory.memsw.limit_in_bytes', '200'],
    ]);
    expect(v1Writes({ memory: 100, memorySwap: -1 }, true).get('memory')).toContainEqual(['memory.memsw.limit_in_bytes', '-1']);
    expect(v1Writes({ memory: 100 }, false).get('memory')).toEqual([['memory.limit_in_bytes', '100']]);
    expect(v1Writes({ cpus: 1.5, cpuShares: 512 }, true).get('cpu')).toEqual([
      ['cpu.shares', '512'],
      ['cpu.cfs_period_us', '100000'],
      ['cpu.cfs_quota_us', '150000'],
    ]);
    expect([...v1Writes({}, true).keys()]).toEqual([]);
  });

  it('v1 cpuset: a new cgroup inherits mems (and cpus) from its parent', async () => {
    const root = mkdtempSync(join(tmpdir(), 'tsbuild-fake-cgroup1-'));
    dirs.push(root);
    mkdirSync(join(root, 'cpuset'));
    writeFileSync(join(root, 'cpuset', 'cpuset.cpus'), '0-3\n');
    writeFileSync(join(root, 'cpuset', 'cpuset.mems'), '0\n');
    const cg = await createRunCgroup({ cpusetCpus: '2' }, root);
    const dir = join(root, 'cpuset', 'tsbuild', cg.name);
    expect(cg.dirs).toEqual([dir]);
    expect(readFileSync(join(root, 'cpuset', 'tsbuild', 'cpuset.cpus'), 'utf8')).toBe('0-3');
    expect(readFileSync(join(dir, 'cpuset.mems'), 'utf8')).toBe('0');
    expect(readFileSync(join(dir, 'cpuset.cpus'), 'utf8')).toBe('2');
  });
});

describe('cpuSharesToWeight', () => {
  it("maps v1's range and default onto v2's, as runc does", () => {
    expect(cpuSharesToWeight(2)).toBe(1);
    expect(cpuSharesToWeight(1024)).toBe(100);
    expect(cpuSharesToWeight(262144)).toBe(10000);
    expect(cpuSharesToWeight(512)).toBeLessThan(100);
    expect(cpuSharesToWeight(2048)).toBeGreaterThan(100);
  });
});
