import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_DEVICE_RULES, type DeviceRule, blkioToIoWeight, cpuSharesToWeight, v1Writes, v2Writes, validateResources } from './cgroup-resources.js';
import { deviceFilterInstructions, encodeInstructions } from './device-filter.js';
import { cgroupLayout, createRunCgroup, delegatedCgroup, pidNamespaceTag, v1WrittenBytes, v2WrittenBytes } from './run-cgroup.js';

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
    // memory was enabled already at the root; the others (and io, for its accounting) are added there and in the parent
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +cpuset +io +pids');
    expect(readFileSync(join(root, 'tsbuild', 'cgroup.subtree_control'), 'utf8')).toBe('+cpu +cpuset +io +memory +pids');
  });

  it('a run without limits still gets memory and io enabled for its accounting, and reads its usage from cpu.stat, memory.peak, io.stat', async () => {
    const root = fakeV2Root('cpu io memory pids');
    const cg = await createRunCgroup({}, root);
    expect(readFileSync(join(root, 'tsbuild', 'cgroup.subtree_control'), 'utf8')).toBe('+io +memory');
    const dir = join(root, 'tsbuild', cg.name);
    writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 4100000\nuser_usec 4000000\nsystem_usec 100000\n');
    writeFileSync(join(dir, 'memory.peak'), '851443712\n');
    writeFileSync(join(dir, 'io.stat'), '254:0 rbytes=4096 wbytes=20971520 rios=1 wios=160 dbytes=0 dios=0\n8:0 rbytes=0 wbytes=4096 rios=0 wios=1 dbytes=0 dios=0\n');
    expect(cg.usage()).toEqual({ cpuMs: 4100, peakMemoryBytes: 851443712, writtenBytes: 20975616 });
  });

  it('usage: a kernel before 5.19 (no memory.peak) and no io controller give the CPU time only', async () => {
    const root = fakeV2Root('cpu pids');
    const cg = await createRunCgroup({}, root);
    expect(existsSync(join(root, 'tsbuild', 'cgroup.subtree_control'))).toBe(false);
    writeFileSync(join(root, 'tsbuild', cg.name, 'cpu.stat'), 'usage_usec 1500\n');
    expect(cg.usage()).toEqual({ cpuMs: 1.5 });
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

describe('block I/O, memory reservation and swappiness, devices (issue 20)', () => {
  const loop = { major: 7, minor: 3 };
  it('v1: weight (BFQ file when it exists), per-device weight and throttles, one device per write', () => {
    const r = { blkioWeight: 300, blkioWeightDevice: [{ ...loop, rate: 200 }], deviceReadBps: [{ ...loop, rate: 1048576 }], deviceWriteBps: [{ ...loop, rate: 2048 }, { major: 8, minor: 0, rate: 4096 }], deviceReadIops: [{ ...loop, rate: 100 }], deviceWriteIops: [{ ...loop, rate: 50 }] };
    expect(v1Writes(r, true).get('blkio')).toEqual([
      ['blkio.weight', '300'],
      ['blkio.weight_device', '7:3 200'],
      ['blkio.throttle.read_bps_device', '7:3 1048576'],
      ['blkio.throttle.write_bps_device', '7:3 2048'],
      ['blkio.throttle.write_bps_device', '8:0 4096'],
      ['blkio.throttle.read_iops_device', '7:3 100'],
      ['blkio.throttle.write_iops_device', '7:3 50'],
    ]);
    expect(v1Writes({ blkioWeight: 300, blkioWeightDevice: [{ ...loop, rate: 20 }] }, true, { bfq: true }).get('blkio')).toEqual([
      ['blkio.bfq.weight', '300'],
      ['blkio.bfq.weight_device', '7:3 20'],
    ]);
  });

  it('v1: reservation is the soft limit, swappiness its own file; devices deny all, then allow each rule', () => {
    expect(v1Writes({ memory: 1 << 26, memoryReservation: 1 << 25, memorySwappiness: 0 }, false).get('memory')).toEqual([
      ['memory.limit_in_bytes', String(1 << 26)],
      ['memory.soft_limit_in_bytes', String(1 << 25)],
      ['memory.swappiness', '0'],
    ]);
    const devices = v1Writes({}, true, { devices: [...DEFAULT_DEVICE_RULES, { type: 'b', major: 7, minor: 3, access: 'rw' }] }).get('devices');
    expect(devices?.[0]).toEqual(['devices.deny', 'a']);
    expect(devices).toContainEqual(['devices.allow', 'c *:* m']);
    expect(devices).toContainEqual(['devices.allow', 'c 1:3 rwm']);
    expect(devices).toContainEqual(['devices.allow', 'c 136:* rwm']);
    expect(devices?.at(-1)).toEqual(['devices.allow', 'b 7:3 rw']);
    expect(v1Writes({}, true).has('devices')).toBe(false);
  });

  it('v2: io.weight converted (io.bfq.weight as is), io.max one line per device, memory.low', () => {
    const r = { blkioWeight: 500, deviceReadBps: [{ ...loop, rate: 1000 }], deviceWriteBps: [{ ...loop, rate: 2000 }], deviceWriteIops: [{ major: 8, minor: 0, rate: 30 }], memoryReservation: 1 << 24 };
    expect(v2Writes(r)).toEqual([
      ['memory.low', String(1 << 24)],
      ['io.weight', String(blkioToIoWeight(500))],
      ['io.max', '7:3 rbps=1000 wbps=2000'],
      ['io.max', '8:0 wiops=30'],
    ]);
    expect(blkioToIoWeight(10)).toBe(1);
    expect(blkioToIoWeight(1000)).toBe(10000);
    expect(v2Writes({ blkioWeight: 500, blkioWeightDevice: [{ ...loop, rate: 100 }] }, true, true)).toEqual([
      ['io.bfq.weight', '500'],
      ['io.bfq.weight', '7:3 100'],
    ]);
  });

  it('v2 (fake tree): enables io and memory, writes the files, warns once about swappiness, attaches the device program', async () => {
    const root = fakeV2Root();
    const attached: [string, DeviceRule[]][] = [];
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const extra: DeviceRule = { type: 'c', major: 10, minor: 229, access: 'rw' };
      const r = { deviceWriteBps: [{ ...loop, rate: 1048576 }], memoryReservation: 1 << 24, memorySwappiness: 10, devices: [extra] };
      const cg = await createRunCgroup(r, root, { confineDevices: true, attachDevices: (d, rules) => void attached.push([d, rules]) });
      await createRunCgroup(r, root, { confineDevices: true, attachDevices: () => {} });
      await new Promise((res) => setImmediate(res));
      const dir = join(root, 'tsbuild', cg.name);
      expect(readFileSync(join(dir, 'io.max'), 'utf8')).toBe('7:3 wbps=1048576');
      expect(readFileSync(join(dir, 'memory.low'), 'utf8')).toBe(String(1 << 24));
      expect(readFileSync(join(root, 'tsbuild', 'cgroup.subtree_control'), 'utf8')).toBe('+io +memory');
      expect(attached).toEqual([[dir, [...DEFAULT_DEVICE_RULES, extra]]]);
      expect(warnings.filter((w) => w.includes('memory-swappiness'))).toHaveLength(1);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('--cgroup-parent: the run goes under the given path, whose new levels get the controllers; the made levels go with the run', async () => {
    const root = fakeV2Root();
    const cg = await createRunCgroup({ pidsLimit: 5, cgroupParent: '/ci//builds/' }, root);
    expect(cg.path).toBe(`/ci/builds/${cg.name}`);
    expect(cg.dirs).toEqual([join(root, 'ci', 'builds', cg.name)]);
    expect(readFileSync(join(root, 'ci', 'cgroup.subtree_control'), 'utf8')).toBe('+io +memory +pids');
    expect(readFileSync(join(root, 'ci', 'builds', 'cgroup.subtree_control'), 'utf8')).toBe('+io +memory +pids');
    // A fake tree's directories hold files, so rmdir fails there: the real removal is tested in
    // test/resources.test.ts. Here, that nothing is made outside the parent.
    expect(existsSync(join(root, 'tsbuild'))).toBe(false);
  });

  it('refuses, in one line, values docker refuses', () => {
    const cases: [object, RegExp][] = [
      [{ blkioWeight: 5 }, /blkioWeight must be an integer from 10 to 1000: 5$/],
      [{ blkioWeightDevice: [{ ...loop, rate: 1001 }] }, /blkioWeightDevice must be an integer from 10 to 1000: 1001$/],
      [{ deviceReadBps: [{ ...loop, rate: 0 }] }, /deviceReadBps for 7:3 must be a positive integer: 0$/],
      [{ memorySwappiness: 101 }, /memorySwappiness must be an integer from 0 to 100: 101$/],
      [{ memory: 1 << 26, memoryReservation: 1 << 27 }, /memoryReservation \(134217728\) must not exceed memory/],
      [{ devices: [{ type: 'c', major: 1, minor: 3, access: 'rwx' }] }, /access must be some of r, w, m$/],
      [{ devices: [{ type: 'c', major: 1, minor: 3, access: 'rr' }] }, /access must be some of r, w, m$/],
      [{ cgroupParent: 'builds' }, /^run: resources.cgroupParent must be an absolute path .*: builds$/],
      [{ cgroupParent: '/a/../../etc' }, /without \. or \.\. .*: \/a\/\.\.\/\.\.\/etc$/],
    ];
    for (const [r, re] of cases) {
      expect(() => validateResources(r), JSON.stringify(r)).toThrow(re);
      expect(() => validateResources(r)).toThrow(/^[^\n]+$/);
    }
    expect(() => validateResources({ blkioWeight: 10, memorySwappiness: 0, cgroupParent: '/a/b', devices: [{ type: 'b', major: 7, minor: -1, access: 'mrw' }] })).not.toThrow();
  });
});

describe('device filter program (cgroup v2 eBPF)', () => {
  it("is runc's: load the context, one block per rule that skips to the next on a mismatch, deny at the end", () => {
    const prog = deviceFilterInstructions([
      { type: 'c', major: 1, minor: 3, access: 'rwm' },
      { type: 'b', major: 7, minor: -1, access: 'r' },
    ]);
    expect(prog).toEqual([
      [0x61, 2, 1, 0, 0],
      [0x54, 2, 0, 0, 0xffff],
      [0x61, 3, 1, 0, 0],
      [0x74, 3, 0, 0, 16],
      [0x61, 4, 1, 4, 0],
      [0x61, 5, 1, 8, 0],
      // c 1:3 rwm: type, major, minor; no access check
      [0x55, 2, 0, 4, 2],
      [0x55, 4, 0, 3, 1],
      [0x55, 5, 0, 2, 3],
      [0xb7, 0, 0, 0, 1],
      [0x95, 0, 0, 0, 0],
      // b 7:* r: type, access outside READ (mknod 1 | write 4), major
      [0x55, 2, 0, 6, 1],
      [0xbc, 1, 3, 0, 0],
      [0x54, 1, 0, 0, 5],
      [0x55, 1, 0, 3, 0],
      [0x55, 4, 0, 2, 7],
      [0xb7, 0, 0, 0, 1],
      [0x95, 0, 0, 0, 0],
      [0xb7, 0, 0, 0, 0],
      [0x95, 0, 0, 0, 0],
    ]);
  });

  it('encodes struct bpf_insn: code, src<<4|dst, s16 offset, s32 immediate, little-endian', () => {
    expect(encodeInstructions([[0x55, 4, 0, 3, 136], [0x61, 2, 1, 8, 0]]).toString('hex')).toBe('550403008800000061120800' + '00000000');
  });
});

describe('written bytes from the io counters', () => {
  it('v1 blkio io_service_bytes: the Write lines of every device, not the Total', () => {
    const text = '8:0 Read 4096\n8:0 Write 1048576\n8:0 Sync 0\n8:0 Async 1052672\n8:0 Total 1052672\n7:0 Write 4096\n7:0 Total 4096\nTotal 1056768\n';
    expect(v1WrittenBytes(text)).toBe(1052672);
    expect(v1WrittenBytes('Total 0\n')).toBe(0);
  });

  it('v2 io.stat: wbytes of every device', () => {
    expect(v2WrittenBytes('8:0 rbytes=1 wbytes=10 rios=1 wios=1\n8:16 rbytes=0 wbytes=5 rios=0 wios=1\n')).toBe(15);
    expect(v2WrittenBytes('')).toBe(0);
  });
});
