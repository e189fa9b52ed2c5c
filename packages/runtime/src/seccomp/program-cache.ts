import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Of } from '@tsbuild/oci';
import { compileFilter, compilerIdentity, encodeProgram } from './bpf.js';
import type { ResolvedProfile } from './profile.js';

/**
 * The BPF program (base64) of a resolved profile, compiled or, with `dir`, taken from what an
 * earlier run compiled: compiling docker's default profile costs ~5 ms of a cold process, on the
 * path of every `tsbuild run` (measured on the 2-vCPU VM), reading it back ~0.2 ms.
 *
 * A file per profile and compiler: `seccomp-<sha256 of compiler identity and profile>`, holding
 * the program's own sha256 and the program. One that does not check out (a write cut short) is
 * compiled again and replaced. Written to a temporary name and renamed, not fsync'd: a cache,
 * which a crash may lose. `dir` must be as trusted as the store it lies in: whoever may write
 * there may replace a run's seccomp filter.
 */
export function compiledProgram(profile: ResolvedProfile, dir?: string): string {
  const compile = (): string => encodeProgram(compileFilter(profile)).toString('base64');
  if (dir === undefined) return compile();
  const file = join(dir, `seccomp-${sha256Of(`${compilerIdentity()}\n${JSON.stringify(profile)}`).slice('sha256:'.length)}`);
  try {
    const text = readFileSync(file, 'utf8');
    const nl = text.indexOf('\n');
    const program = text.slice(nl + 1);
    if (nl > 0 && text.slice(0, nl) === sha256Of(program)) return program;
  } catch {
    // not there yet
  }
  const program = compile();
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(tmp, `${sha256Of(program)}\n${program}`, { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    // a read-only store: compiled every time
    rmSync(tmp, { force: true });
  }
  return program;
}
