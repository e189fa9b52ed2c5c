import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CAPABILITIES } from '../capabilities.js';
import { compileFilter, compilerIdentity, encodeProgram } from './bpf.js';
import { DEFAULT_SECCOMP_PROFILE } from './default-profile.js';
import { compiledProgram, defaultProfileIdentity } from './program-cache.js';
import { resolveProfile } from './profile.js';

const resolved = (caps: string[] = DEFAULT_CAPABILITIES) => resolveProfile(DEFAULT_SECCOMP_PROFILE, { capabilities: new Set(caps), arch: 'x64', kernel: '6.18.0' });
const compiled = (caps?: string[]) => encodeProgram(compileFilter(resolved(caps))).toString('base64');

describe('compiled seccomp programs kept for later runs', () => {
  const dirs: string[] = [];
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'tsbuild-seccomp-cache-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('the program is the one the compiler makes, written once and then read back', () => {
    const d = dir();
    const first = compiledProgram(() => resolved(), d);
    expect(first).toBe(compiled());
    const files = readdirSync(d);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^seccomp-[0-9a-f]{64}$/);
    // What is read back is the file's: a program put there under the right check is taken as it is.
    const file = join(d, files[0]!);
    const [sum, program] = readFileSync(file, 'utf8').split('\n');
    expect(program).toBe(first);
    expect(sum).toMatch(/^fnv1a:[0-9a-f]{8}$/);
    expect(compiledProgram(() => resolved(), d)).toBe(first);
  });

  it('another profile (other capabilities) is another file; no directory: compiled each time', () => {
    const d = dir();
    const a = compiledProgram(() => resolved(), d);
    const b = compiledProgram(() => resolved([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN']), d);
    expect(b).not.toBe(a);
    expect(b).toBe(compiled([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN']));
    expect(readdirSync(d)).toHaveLength(2);
    expect(compiledProgram(() => resolved())).toBe(a);
  });

  it('a file that does not check out (cut short, or changed) is compiled again and replaced', () => {
    const d = dir();
    compiledProgram(() => resolved(), d);
    const file = join(d, readdirSync(d)[0]!);
    const [sum, program] = readFileSync(file, 'utf8').split('\n');
    writeFileSync(file, `${sum}\n${program!.slice(0, 100)}`);
    expect(compiledProgram(() => resolved(), d)).toBe(compiled());
    writeFileSync(file, `${sum}\nAAAA${program!.slice(4)}`);
    expect(compiledProgram(() => resolved(), d)).toBe(compiled());
    expect(readFileSync(file, 'utf8')).toBe(`${sum}\n${program}`);
    writeFileSync(file, '');
    expect(compiledProgram(() => resolved(), d)).toBe(compiled());
  });

  it("the compiler's identity is a digest of its code and tables; the default profile's adds the profile", () => {
    expect(compilerIdentity()).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(compilerIdentity()).toBe(compilerIdentity());
    expect(defaultProfileIdentity()).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(defaultProfileIdentity()).not.toBe(compilerIdentity());
  });

  it('a named program (docker\'s default profile, named by what decides it) is kept under that name, and is resolved only to be compiled', () => {
    const d = dir();
    let resolves = 0;
    const counted = (): ReturnType<typeof resolved> => {
      resolves++;
      return resolved();
    };
    expect(compiledProgram(counted, d, 'default-x')).toBe(compiled());
    expect(readdirSync(d)).toEqual(['seccomp-default-x']);
    expect(resolves).toBe(1);
    expect(compiledProgram(counted, d, 'default-x')).toBe(compiled());
    expect(resolves).toBe(1);
  });
});
