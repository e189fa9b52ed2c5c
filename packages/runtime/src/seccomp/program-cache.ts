import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lazy, sha256Of } from '@tsbuild/oci';
import { compileFilter, compilerIdentity, encodeProgram } from './bpf.js';
import { DEFAULT_SECCOMP_PROFILE } from './default-profile.js';
import type { ResolvedProfile } from './profile.js';

/**
 * Set by the CLI's bundle (packages/cli/scripts/bundle.mjs): the digest defaultProfileIdentity
 * computes, computed when the bundle was made from the code it bundles. Undefined outside it.
 */
declare const TSBUILD_SECCOMP_IDENTITY: string | undefined;

/**
 * A digest of the compiler, its syscall tables and docker's default profile: what, with the
 * capabilities, the architecture and the kernel release, decides the program of a run with the
 * default profile. The bundle carries it, so that such a run names its cache file without
 * hashing anything (node:crypto's load and three digests cost ~4 ms of every `tsbuild run`,
 * measured, on its longest path).
 */
export const defaultProfileIdentity = lazy(() =>
  typeof TSBUILD_SECCOMP_IDENTITY === 'string' ? TSBUILD_SECCOMP_IDENTITY : sha256Of(`${compilerIdentity()}\n${JSON.stringify(DEFAULT_SECCOMP_PROFILE)}`),
);

/**
 * The BPF program (base64) of a resolved profile, compiled or, with `dir`, taken from what an
 * earlier run compiled: compiling docker's default profile costs ~5 ms of a cold process, on the
 * path of every `tsbuild run` (measured on the 2-vCPU VM), reading it back ~0.2 ms.
 *
 * A file per profile and compiler: `seccomp-<name>`, where `name` is given for docker's default
 * profile (see defaultProfileIdentity: no digest to compute), and is otherwise the sha256 of the
 * compiler's identity and the resolved profile. The file holds an FNV-1a checksum of the program
 * and the program; one that does not check out (a write cut short) is compiled again and
 * replaced. Written to a temporary name and renamed, not fsync'd: a cache, which a crash may
 * lose. `dir` must be as trusted as the store it lies in: whoever may write there may replace a
 * run's seccomp filter (a checksum keeps out accidents, not a writer).
 */
export function compiledProgram(resolve: () => ResolvedProfile, dir?: string, name?: string): string {
  const compile = (): string => encodeProgram(compileFilter(resolve())).toString('base64');
  if (dir === undefined) return compile();
  const file = join(dir, `seccomp-${name ?? sha256Of(`${compilerIdentity()}\n${JSON.stringify(resolve())}`).slice('sha256:'.length)}`);
  try {
    const text = readFileSync(file, 'utf8');
    const nl = text.indexOf('\n');
    const program = text.slice(nl + 1);
    if (nl > 0 && text.slice(0, nl) === checksum(program)) return program;
  } catch {
    // missing or unreadable: compiled below
  }
  const program = compile();
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(tmp, `${checksum(program)}\n${program}`, { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    rmSync(tmp, { force: true });
  }
  return program;
}

/** FNV-1a (32 bits) of the text: `fnv1a:` and 8 hex digits. */
function checksum(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return `fnv1a:${(h >>> 0).toString(16).padStart(8, '0')}`;
}
