import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cgroupControls } from './info.js';

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

function tree(files: string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'tsbuild-info-cgroup-'));
  roots.push(root);
  for (const f of files) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), f.endsWith('cgroup.controllers') ? 'cpu io memory pids\n' : '');
  }
  return root;
}

describe('info: host.cgroupControls', () => {
  it('v1: throttling from blkio.throttle.*, weight only with blkio.weight or BFQ, devices from the devices hierarchy', () => {
    expect(cgroupControls(tree(['blkio/blkio.throttle.write_bps_device', 'devices/devices.allow']))).toEqual({ blkio: true, blkioWeight: false, devices: true });
    expect(cgroupControls(tree(['blkio/blkio.throttle.write_bps_device', 'blkio/blkio.bfq.weight']))).toEqual({ blkio: true, blkioWeight: true, devices: false });
    expect(cgroupControls(tree(['memory/memory.limit_in_bytes']))).toEqual({ blkio: false, blkioWeight: false, devices: false });
  });

  it('v2: the io controller in cgroup.controllers; devices by eBPF', () => {
    expect(cgroupControls(tree(['cgroup.controllers']))).toEqual({ blkio: true, blkioWeight: true, devices: true });
  });
});
