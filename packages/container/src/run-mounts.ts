import path from 'node:path';
import { InvalidArgumentError, crypto } from '@tsbuild/oci';

/**
 * `RUN --mount=type=…,key=value,…` as BuildKit's Dockerfile frontend reads it: bind (the
 * default), cache, tmpfs and secret. The mounts exist only while the RUN runs; nothing under
 * their targets reaches the layer.
 */
export type RunMount =
  | { type: 'bind'; target: string; source: string; from?: string; readwrite: boolean }
  | { type: 'cache'; target: string; id: string; sharing: 'shared' | 'private' | 'locked'; mode: number; uid: number; gid: number; readonly: boolean }
  | { type: 'tmpfs'; target: string; size?: string }
  | { type: 'secret'; target: string; id: string; required: boolean; mode: number; uid: number; gid: number };

const KEYS: Record<RunMount['type'], string[]> = {
  bind: ['type', 'target', 'dst', 'destination', 'source', 'src', 'from', 'rw', 'readwrite', 'ro', 'readonly'],
  cache: ['type', 'target', 'dst', 'destination', 'id', 'sharing', 'mode', 'uid', 'gid', 'ro', 'readonly'],
  tmpfs: ['type', 'target', 'dst', 'destination', 'size'],
  secret: ['type', 'target', 'dst', 'destination', 'id', 'required', 'mode', 'uid', 'gid'],
};

/** Parses one --mount value; `cwd` is the working directory relative targets resolve against. */
export function parseRunMount(value: string, cwd: string): RunMount {
  const kv = new Map<string, string>();
  for (const part of value.split(',')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const v = eq < 0 ? 'true' : unquote(part.slice(eq + 1).trim());
    kv.set(k, v);
  }
  const type = (kv.get('type') ?? 'bind') as RunMount['type'];
  if (type === ('ssh' as string)) throw new InvalidArgumentError(`--mount=${value}: type=ssh is not supported (no SSH agent forwarding in tsbuild)`);
  if (!(type in KEYS)) throw new InvalidArgumentError(`--mount=${value}: unknown mount type "${type}" (want bind, cache, tmpfs or secret)`);
  for (const k of kv.keys()) if (!KEYS[type].includes(k)) throw new InvalidArgumentError(`--mount=${value}: unknown option "${k}" for type=${type}`);
  const rawTarget = kv.get('target') ?? kv.get('dst') ?? kv.get('destination');
  const bool = (k: string): boolean => {
    const v = kv.get(k);
    if (v === undefined) return false;
    if (v === 'true' || v === '') return true;
    if (v === 'false') return false;
    throw new InvalidArgumentError(`--mount=${value}: ${k}=${v}: want true or false`);
  };
  const int = (k: string, dflt: number, radix = 10): number => {
    const v = kv.get(k);
    if (v === undefined) return dflt;
    if (!(radix === 8 ? /^[0-7]{1,4}$/ : /^\d+$/).test(v)) throw new InvalidArgumentError(`--mount=${value}: ${k}=${v}: want ${radix === 8 ? 'an octal mode such as 0755' : 'a number'}`);
    return parseInt(v, radix);
  };
  if (type === 'secret') {
    const id = kv.get('id') ?? (rawTarget !== undefined ? path.posix.basename(rawTarget) : undefined);
    if (id === undefined || id === '') throw new InvalidArgumentError(`--mount=${value}: a secret needs id= or target=`);
    return { type, id, target: path.posix.resolve(cwd, rawTarget ?? `/run/secrets/${id}`), required: bool('required'), mode: int('mode', 0o400, 8), uid: int('uid', 0), gid: int('gid', 0) };
  }
  if (rawTarget === undefined || rawTarget === '') throw new InvalidArgumentError(`--mount=${value}: target= is required for type=${type}`);
  const target = path.posix.resolve(cwd, rawTarget);
  switch (type) {
    case 'bind':
      return { type, target, source: kv.get('source') ?? kv.get('src') ?? '/', ...(kv.has('from') ? { from: kv.get('from')! } : {}), readwrite: bool('rw') || bool('readwrite') };
    case 'cache': {
      const sharing = kv.get('sharing') ?? 'shared';
      if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') throw new InvalidArgumentError(`--mount=${value}: sharing=${sharing}: want shared, private or locked`);
      return { type, target, id: kv.get('id') ?? target, sharing, mode: int('mode', 0o755, 8), uid: int('uid', 0), gid: int('gid', 0), readonly: bool('ro') || bool('readonly') };
    }
    default: {
      const size = kv.get('size');
      if (size !== undefined && !/^\d+[kmgKMG%]?$/.test(size)) throw new InvalidArgumentError(`--mount=${value}: size=${size}: want bytes such as 64m`);
      return { type: 'tmpfs', target, ...(size !== undefined ? { size } : {}) };
    }
  }
}

/** The directory name of a cache mount's id under <store>/cache-mounts: readable, and collision-free by its hash. */
export function cacheMountDirName(id: string): string {
  const readable = id.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 60);
  return `${readable || 'cache'}-${crypto().createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
}

function unquote(v: string): string {
  return v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) ? v.slice(1, -1) : v;
}
