import { describe, expect, it } from 'vitest';
import { parseWwwAuthenticate } from './www-authenticate.js';
import { registryEndpoint } from './endpoint.js';
import { parseReference } from '@tsbuild/oci';

describe('parseWwwAuthenticate', () => {
  it('reads a bearer challenge with quoted parameters', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')).toEqual([
      { scheme: 'Bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
    ]);
  });
  it('reads several challenges and token values', () => {
    expect(parseWwwAuthenticate('Basic realm="Registry Realm", Bearer realm=x,service=y')).toEqual([
      { scheme: 'Basic', params: { realm: 'Registry Realm' } },
      { scheme: 'Bearer', params: { realm: 'x', service: 'y' } },
    ]);
  });
  it('unescapes quoted pairs', () => {
    expect(parseWwwAuthenticate('Bearer realm="a\\"b"')[0]!.params.realm).toBe('a"b');
  });
});

describe('registryEndpoint', () => {
  it('sends docker.io to registry-1.docker.io over https', () => {
    expect(registryEndpoint(parseReference('busybox')).href).toBe('https://registry-1.docker.io/v2/');
  });
  it('uses http for loopback unless told to verify TLS', () => {
    expect(registryEndpoint(parseReference('127.0.0.1:5000/a')).href).toBe('http://127.0.0.1:5000/v2/');
    expect(registryEndpoint(parseReference('localhost:5000/a'), { tlsVerify: true }).href).toBe('https://localhost:5000/v2/');
    expect(registryEndpoint(parseReference('quay.io/a/b'), { tlsVerify: false }).href).toBe('http://quay.io/v2/');
  });
});
