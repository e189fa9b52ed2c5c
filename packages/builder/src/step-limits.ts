import { parseByteSize } from '@tsbuild/oci';
/**
 * `# tsbuild:limits memory=2g cpus=1 pids=100`: a comment right above an instruction gives that
 * step its own cgroup limits, in place of the build's --memory/--cpus/--pids-limit (which stay
 * the defaults of every other step). Being a comment, other builders ignore it.
 */
export interface StepLimits {
  /** Bytes (docker's sizes: 64m, 2g; binary units). */
  memory?: number;
  cpus?: number;
  /** -1 or 0: unlimited, as --pids-limit. */
  pidsLimit?: number;
  /** The directive's own line, to name it when a limit is hit. */
  line: number;
}

export const LIMITS_DIRECTIVE = /^\s*#\s*tsbuild:limits\b(.*)$/;

/**
 * The directive's `key=value` words. Throws a one-line message (the caller adds `FILE:LINE:`) for
 * anything it does not take: a typo in a limit must not silently leave the step unlimited.
 */
export function parseStepLimits(text: string, line: number): StepLimits {
  const out: StepLimits = { line };
  const words = text.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) throw new Error('# tsbuild:limits: want memory=SIZE, cpus=N and/or pids=N');
  for (const w of words) {
    const m = /^([a-z]+)=(.+)$/.exec(w);
    const key = m?.[1];
    const value = m?.[2] ?? '';
    if (key === 'memory') {
      const bytes = parseByteSize(value) ?? NaN;
      // The kernel needs some room for the step's own processes; docker's minimum is 6 MiB.
      if (!(bytes >= 6 * 1024 * 1024)) throw new Error(`# tsbuild:limits ${w}: want a size of at least 6m, such as 512m or 2g`);
      out.memory = bytes;
    } else if (key === 'cpus') {
      const n = Number(value);
      if (!(n > 0) || !/^\d*\.?\d+$/.test(value)) throw new Error(`# tsbuild:limits ${w}: want a positive number of CPUs, such as 0.5 or 2`);
      out.cpus = n;
    } else if (key === 'pids') {
      if (!/^-?\d+$/.test(value)) throw new Error(`# tsbuild:limits ${w}: want a whole number of processes (-1: unlimited)`);
      out.pidsLimit = Number(value);
    } else {
      throw new Error(`# tsbuild:limits ${w}: unknown limit (tsbuild:limits takes memory=, cpus=, pids=)`);
    }
  }
  return out;
}
