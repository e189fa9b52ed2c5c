import { InvalidArgumentError } from '@tsbuild/oci';

/**
 * Resource limits of a run (setrlimit(2)), by docker's names (go-units ulimit.go) and the kernel's
 * numbers (asm-generic/resource.h, the same on every architecture Linux containers run on).
 */
export const RLIMITS = {
  cpu: 0,
  fsize: 1,
  data: 2,
  stack: 3,
  core: 4,
  rss: 5,
  nproc: 6,
  nofile: 7,
  memlock: 8,
  locks: 10,
  sigpending: 11,
  msgqueue: 12,
  nice: 13,
  rtprio: 14,
  rttime: 15,
} as const;

export type UlimitName = keyof typeof RLIMITS;

/** One limit: soft and hard, -1 for unlimited (RLIM_INFINITY). */
export interface Ulimit {
  name: UlimitName;
  soft: number;
  hard: number;
}

/**
 * What a run gets for the limits it does not set: buildah 1.28's, measured with
 * `buildah --runtime runc run … sh -c 'ulimit -a'` as root (nofile 1024:1024, nproc 32768:32768;
 * everything else inherited), so a RUN sees the same limits under tsbuild as under buildah
 * whatever the limits of the shell tsbuild was started from (node raises its own nofile).
 * A default never fails a run: it is lowered to the hard limit tsbuild has (rootless).
 */
export const DEFAULT_ULIMITS: readonly Ulimit[] = [
  { name: 'nofile', soft: 1024, hard: 1024 },
  { name: 'nproc', soft: 32768, hard: 32768 },
];

/** Largest value accepted (RLIM_INFINITY - 1 does not fit a JS number; 2^53 is plenty). */
const MAX_LIMIT = Number.MAX_SAFE_INTEGER;

/**
 * docker's `--ulimit NAME=SOFT[:HARD]` (HARD defaults to SOFT, -1 is unlimited), e.g.
 * `nofile=1024:2048`. One line naming the flag value on any error.
 */
export function parseUlimit(text: string): Ulimit {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`--ulimit ${text}: ${why}`);
  };
  const eq = text.indexOf('=');
  if (eq < 0) bad('want NAME=SOFT[:HARD], e.g. nofile=1024:2048');
  const name = text.slice(0, eq);
  const values = text.slice(eq + 1).split(':');
  if (values.length > 2) bad('want NAME=SOFT[:HARD], e.g. nofile=1024:2048');
  const number = (v: string): number => {
    if (!/^(-1|\d+)$/.test(v) || Number(v) > MAX_LIMIT) bad(`${v === '' ? 'empty value' : v} is not a limit (a number, or -1 for unlimited)`);
    return Number(v);
  };
  const soft = number(values[0]!);
  const hard = values.length === 2 ? number(values[1]!) : soft;
  const limit = { name: name as UlimitName, soft, hard };
  validateUlimit(limit, `--ulimit ${text}`);
  return limit;
}

/** The one check of a limit, for parsed flags and RunSpecs alike. */
export function validateUlimit(u: Ulimit, where = `run: ulimit ${JSON.stringify(u)}`): void {
  if (!Object.hasOwn(RLIMITS, u.name)) throw new InvalidArgumentError(`${where}: unknown limit ${u.name} (want one of ${Object.keys(RLIMITS).sort().join(', ')})`);
  for (const v of [u.soft, u.hard]) if (!Number.isSafeInteger(v) || v < -1) throw new InvalidArgumentError(`${where}: ${v} is not a limit (a number, or -1 for unlimited)`);
  const inf = (v: number): number => (v === -1 ? Infinity : v);
  if (inf(u.soft) > inf(u.hard)) throw new InvalidArgumentError(`${where}: soft limit ${u.soft} is above hard limit ${u.hard}`);
}

/**
 * The limits a run is given, as the helper sets them: the defaults, replaced by name by those
 * asked (the last of a name wins, as docker's merge does). A default is `orLower`: the helper
 * lowers it to the hard limit it has rather than fail.
 */
export function rlimitRequests(asked: readonly Ulimit[] | undefined): RlimitRequest[] {
  const byName = new Map<UlimitName, RlimitRequest>();
  for (const u of DEFAULT_ULIMITS) byName.set(u.name, { ...u, resource: RLIMITS[u.name], orLower: true });
  for (const u of asked ?? []) byName.set(u.name, { ...u, resource: RLIMITS[u.name] });
  return [...byName.values()];
}

/** A limit as the helper gets it. */
export interface RlimitRequest extends Ulimit {
  resource: number;
  orLower?: boolean;
}

/** oom_score_adj's range (proc(5)): -1000 never OOM-killed, 1000 killed first. */
export function validateOomScoreAdj(v: number, where = `run: oomScoreAdj ${v}`): void {
  if (!Number.isInteger(v) || v < -1000 || v > 1000) throw new InvalidArgumentError(`${where}: want an integer from -1000 to 1000`);
}
