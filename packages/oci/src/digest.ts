import { InvalidArgumentError } from './errors.js';

/** A content digest as the OCI image spec writes it. Only sha256 is produced; sha512 is accepted. */
export type Digest = `sha256:${string}` | `sha512:${string}`;

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

/** Parses and validates a digest; throws InvalidArgumentError naming the bad value. */
export function parseDigest(s: string): Digest {
  if (!isDigest(s)) throw new InvalidArgumentError(`invalid digest "${s}"`);
  return s;
}

export function digestAlgorithm(d: Digest): 'sha256' | 'sha512' {
  return d.startsWith('sha512:') ? 'sha512' : 'sha256';
}

/** The hex part of a digest, used as a file name in blob stores. */
export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

/** The short image ID docker prints: the first 12 hex characters. */
export function shortId(d: Digest): string {
  return digestHex(d).slice(0, 12);
}
