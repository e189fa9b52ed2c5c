import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { emulatorFor, runsNatively } from './emulation.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A directory shaped like /proc/sys/fs/binfmt_misc with the given entries. */
function binfmt(entries: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'tsbuild-binfmt-'));
  dirs.push(d);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'status'), 'enabled\n');
  for (const [n, text] of Object.entries(entries)) writeFileSync(join(d, n), text);
  return d;
}

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };

describe('emulation (binfmt_misc)', () => {
  it('the host architecture (and i386 on x86_64) runs natively', () => {
    expect(runsNatively(amd64, amd64)).toBe(true);
    expect(runsNatively({ os: 'linux', architecture: '386' }, amd64)).toBe(true);
    expect(runsNatively(arm64, amd64)).toBe(false);
  });

  it('an enabled entry with the F flag is the emulator', () => {
    const d = binfmt({ 'qemu-aarch64': 'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n' });
    expect(emulatorFor(arm64, d)).toEqual({ entry: 'qemu-aarch64', interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P' });
  });

  it('each missing piece is one line naming the platform and what to do', () => {
    expect(() => emulatorFor(arm64, binfmt({}))).toThrow(/^platform linux\/arm64\/v8: no emulator for aarch64 is registered with binfmt_misc \(install Debian's qemu-user-static/);
    expect(() => emulatorFor(arm64, join(tmpdir(), 'no-such-binfmt'))).toThrow(/binfmt_misc is not mounted/);
    expect(() => emulatorFor(arm64, binfmt({ 'qemu-aarch64': 'disabled\ninterpreter /x\nflags: F\n' }))).toThrow(/entry qemu-aarch64 is disabled/);
    expect(() => emulatorFor(arm64, binfmt({ 'qemu-aarch64': 'enabled\ninterpreter /x\nflags: OC\n' }))).toThrow(/lacks the F flag/);
    expect(() => emulatorFor({ os: 'linux', architecture: 'sparc64' }, binfmt({}))).toThrow(/no emulator is known for architecture sparc64/);
    expect(() => emulatorFor({ os: 'windows', architecture: 'amd64' }, binfmt({}))).toThrow(/needs a linux image/);
  });
});
