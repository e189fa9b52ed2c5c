import { execFileSync } from 'node:child_process';
import { mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { attachDeviceFilter } from '@tsbuild/linux';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_DEVICE_RULES, type DeviceRule } from '../src/cgroups/cgroup-resources.js';
import { deviceFilterInstructions, encodeInstructions } from '../src/cgroups/device-filter.js';

/**
 * The cgroup v2 device program, loaded and attached for real. This machine is v1 hybrid, but the
 * kernel runs BPF_CGROUP_DEVICE programs of a task's cgroup in the unified hierarchy
 * (devcgroup_check_permission: the eBPF check, then the v1 one) whatever the v1 hierarchies
 * say: a cgroup in /sys/fs/cgroup/unified tests the program as a pure v2 host would run it.
 */
const UNIFIED = '/sys/fs/cgroup/unified';
const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmdirSync(d);
});

/** Runs `script` in a new cgroup v2 with a device program for `rules`; its output. */
function shWithRules(rules: DeviceRule[], script: string): string {
  const dir = join(UNIFIED, `tsbuild-${process.pid}-bpf${made.length}`);
  mkdirSync(dir);
  made.push(dir);
  attachDeviceFilter(dir, encodeInstructions(deviceFilterInstructions(rules)));
  // The shell moves itself in, then runs the script (a child: the cgroup is empty again after).
  return execFileSync('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && sh -c '${script}' 2>&1`], { encoding: 'utf8' });
}

const tryOpen = (dev: string, mode: '<' | '>'): string => `if true ${mode} ${dev}; then echo "${dev}${mode}ok"; else echo "${dev}${mode}denied"; fi`;

describe('cgroup v2 device program (eBPF, real kernel)', () => {
  it('the default rules allow /dev/null, zero, urandom and deny every other device, /dev/kmsg included', () => {
    const out = shWithRules([...DEFAULT_DEVICE_RULES], [tryOpen('/dev/null', '>'), tryOpen('/dev/zero', '<'), tryOpen('/dev/urandom', '<'), tryOpen('/dev/kmsg', '<')].join('; '));
    expect(out).toContain('/dev/null>ok');
    expect(out).toContain('/dev/zero<ok');
    expect(out).toContain('/dev/urandom<ok');
    expect(out).toMatch(/Operation not permitted[^]*\/dev\/kmsg<denied/);
  });

  it('an added rule allows its device for its access only (c 1:11 r: reads, no writes)', () => {
    const out = shWithRules([...DEFAULT_DEVICE_RULES, { type: 'c', major: 1, minor: 11, access: 'r' }], [tryOpen('/dev/kmsg', '<'), tryOpen('/dev/kmsg', '>')].join('; '));
    expect(out).toContain('/dev/kmsg<ok');
    expect(out).toContain('/dev/kmsg>denied');
  });

  it('a wildcard minor (c 1:* rw) covers every minor of the major; a block rule does not cover a char device', () => {
    const out = shWithRules([{ type: 'c', major: 1, minor: -1, access: 'rw' }, { type: 'b', major: 1, minor: 11, access: 'rw' }], [tryOpen('/dev/kmsg', '<'), tryOpen('/dev/null', '>'), tryOpen('/dev/tty', '<')].join('; '));
    expect(out).toContain('/dev/kmsg<ok');
    expect(out).toContain('/dev/null>ok');
    expect(out).toContain('/dev/tty<denied');
  });
});
