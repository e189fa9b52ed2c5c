import { DEFAULT_DOMAIN, DOCKER_HUB_REGISTRY, type Reference } from '@tsbuild/oci';

/**
 * Where a reference's registry answers: docker.io is served from registry-1.docker.io; every
 * other host is used as written. Loopback hosts default to plain http, as docker and
 * containers/image treat them as insecure registries.
 */
export function registryEndpoint(ref: Pick<Reference, 'domain'>, opts: { tlsVerify?: boolean } = {}): URL {
  const host = ref.domain === DEFAULT_DOMAIN ? DOCKER_HUB_REGISTRY : ref.domain;
  const hostname = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const loopback = hostname === 'localhost' || hostname === '::1' || /^127\./.test(hostname);
  const scheme = opts.tlsVerify === false || (opts.tlsVerify === undefined && loopback) ? 'http' : 'https';
  return new URL(`${scheme}://${host}/v2/`);
}
