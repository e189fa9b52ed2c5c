import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { aarch64Syscalls } from './generated/aarch64.js';
import { i386Syscalls } from './generated/i386.js';
import { x32Syscalls } from './generated/x32.js';
import { x86_64Syscalls } from './generated/x86_64.js';

const [X86_64, I386, X32, AARCH64] = [x86_64Syscalls(), i386Syscalls(), x32Syscalls(), aarch64Syscalls()];

const here = path.dirname(fileURLToPath(import.meta.url));
const committed = path.join(here, 'generated');
const script = path.resolve(here, '../../scripts/gen-seccomp.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsbuild-gen-seccomp-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('generated seccomp syscall tables', () => {
  it('are what scripts/gen-seccomp.mjs makes from the kernel headers, byte for byte', () => {
    execFileSync(process.execPath, [script, '--out', tmp], { stdio: 'pipe' });
    const files = readdirSync(committed).sort();
    expect(readdirSync(tmp).sort()).toEqual(files);
    expect(files).toEqual(['aarch64.ts', 'i386.ts', 'x32.ts', 'x86_64.ts']);
    for (const f of files) {
      expect(readFileSync(path.join(tmp, f), 'utf8'), f).toBe(readFileSync(path.join(committed, f), 'utf8'));
    }
  });

  it('carry the numbers seccomp_data.nr has on each architecture', () => {
    // arch/x86/entry/syscalls/syscall_64.tbl, syscall_32.tbl; x32 numbers carry __X32_SYSCALL_BIT;
    // arm64 uses include/uapi/asm-generic/unistd.h.
    expect([X86_64.read, X86_64.openat, X86_64.clone3]).toEqual([0, 257, 435]);
    expect([I386.read, I386.socketcall, I386.openat]).toEqual([3, 102, 295]);
    expect(X32.execve).toBe(0x40000000 + 520);
    expect([AARCH64.openat, AARCH64.fstat, AARCH64.open]).toEqual([56, 80, undefined]);
  });
});
