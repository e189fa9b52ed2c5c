import { InvalidArgumentError } from './errors.js';
import { type Digest, isDigest } from './digest.js';

/**
 * An image reference as docker writes it: `[host[:port]/]path[:tag][@digest]`, normalised the
 * way docker normalises it: `busybox` is `docker.io/library/busybox:latest`. Grammar from
 * distribution/reference: path components are lowercase alphanumerics joined by `.`, `_`, `__`
 * or runs of `-`; a tag is `[\w][\w.-]{0,127}`.
 */
export interface Reference {
  /** Registry host, with port if any, e.g. `docker.io`, `127.0.0.1:5000`. */
  readonly domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

export const DEFAULT_DOMAIN = 'docker.io';
/** The host docker.io references are actually served from. */
export const DOCKER_HUB_REGISTRY = 'registry-1.docker.io';

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::([0-9]+))?$/;
const MAX_PORT = 65535;
const MAX_NAME = 255;

/**
 * Parses a reference and fills docker's defaults. A reference with neither tag nor digest gets
 * the tag `latest` unless `defaultTag` is false.
 */
export function parseReference(input: string, opts: { defaultTag?: boolean } = {}): Reference {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`invalid reference "${input}": ${why}`);
  };
  if (input.length === 0) bad('empty');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) bad(`bad digest "${d}"`);
    digest = d as Digest;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`bad tag "${tag}"`);
  }
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // A registry host has a '.' or a port, or is localhost (docker's rule before 2018, and what
    // podman's short names assume). Current distribution/reference also takes a first component
    // with upper case for a host, so `UPPER/case` would name repository "case" on a registry
    // called "UPPER", which no one means: it is a repository path, and must be lowercase.
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  const host = DOMAIN.exec(domain);
  if (host === null) bad(`bad registry host "${domain}"`);
  // The grammar's port is any digits; a TCP port is 1..65535 (a bigger one only fails at connect).
  const port = host?.[1];
  if (port !== undefined && !(Number(port) >= 1 && Number(port) <= MAX_PORT)) bad(`port ${port} of registry host "${domain}" is not in 1..${MAX_PORT}`);
  if (domain === 'index.docker.io') domain = DEFAULT_DOMAIN;
  if (path !== path.toLowerCase()) bad('repository name must be lowercase');
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  for (const c of path.split('/')) if (!COMPONENT.test(c)) bad(`bad path component "${c}"`);
  if (domain.length + 1 + path.length > MAX_NAME) bad(`name longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined && opts.defaultTag !== false) tag = 'latest';
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** `domain/path`, the repository name without tag or digest. */
export function repositoryName(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

/** The fully qualified form: `docker.io/library/busybox:latest`, `host/repo@sha256:…`. */
export function formatReference(r: Reference): string {
  return `${repositoryName(r)}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** The short form docker prints: `busybox:latest`, `myorg/app:1`, `127.0.0.1:5000/x:y`. */
export function familiarReference(r: Reference): string {
  let name = repositoryName(r);
  if (r.domain === DEFAULT_DOMAIN) {
    name = r.path.startsWith('library/') && r.path.split('/').length === 2 ? r.path.slice('library/'.length) : r.path;
  }
  return `${name}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** The same repository with another tag or digest. */
export function withTag(r: Reference, tag: string): Reference {
  if (!TAG.test(tag)) throw new InvalidArgumentError(`invalid tag "${tag}"`);
  return { domain: r.domain, path: r.path, tag };
}
