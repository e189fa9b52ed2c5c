import { describe, expect, it } from 'vitest';
import { familiarReference, formatReference, parseReference } from './reference.js';

describe('parseReference normalises like docker', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36'],
    ['myorg/app', 'docker.io/myorg/app:latest', 'myorg/app:latest'],
    ['index.docker.io/library/alpine:3', 'docker.io/library/alpine:3', 'alpine:3'],
    ['127.0.0.1:5000/x/y:z', '127.0.0.1:5000/x/y:z', '127.0.0.1:5000/x/y:z'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
    ['quay.io/a/b-c__d.e', 'quay.io/a/b-c__d.e:latest', 'quay.io/a/b-c__d.e:latest'],
  ])('%s → %s', (input, full, short) => {
    const r = parseReference(input);
    expect(formatReference(r)).toBe(full);
    expect(familiarReference(r)).toBe(short);
  });

  it('keeps a digest and adds no tag next to it', () => {
    const d = `sha256:${'a'.repeat(64)}`;
    const r = parseReference(`busybox@${d}`);
    expect(r.tag).toBeUndefined();
    expect(r.digest).toBe(d);
    expect(formatReference(r)).toBe(`docker.io/library/busybox@${d}`);
  });

  it('separates a port from a tag', () => {
    const r = parseReference('localhost:5000/app');
    expect(r.domain).toBe('localhost:5000');
    expect(r.tag).toBe('latest');
  });

  it.each(['', 'UPPER', 'a//b', 'app:bad tag', 'app@sha256:short', 'a/-b', `x:${'t'.repeat(129)}`])('rejects %j', (bad) => {
    expect(() => parseReference(bad)).toThrow(/invalid reference/);
  });

  it.each([
    ['UPPER/case', 'repository name must be lowercase'],
    ['Myorg/app:1', 'repository name must be lowercase'],
    ['example.com/Repo', 'repository name must be lowercase'],
    ['127.0.0.1:99999/x', 'port 99999 of registry host "127.0.0.1:99999" is not in 1..65535'],
    ['localhost:0/x', 'port 0 of registry host "localhost:0" is not in 1..65535'],
    ['example.com:65536/x:1', 'port 65536 of registry host "example.com:65536" is not in 1..65535'],
    [`example.com/${'a'.repeat(244)}`, 'name longer than 255 characters'],
    [`x:${'t'.repeat(129)}`, `bad tag "${'t'.repeat(129)}"`],
  ])('rejects %j in one line saying what is wrong', (bad, why) => {
    expect(() => parseReference(bad)).toThrow(`invalid reference "${bad}": ${why}`);
  });

  it.each([
    ['Example.COM/app', 'Example.COM/app:latest'],
    ['127.0.0.1:65535/x', '127.0.0.1:65535/x:latest'],
    ['localhost:1/x', 'localhost:1/x:latest'],
    ['[::1]:5000/x', '[::1]:5000/x:latest'],
    [`example.com/${'a'.repeat(243)}`, `example.com/${'a'.repeat(243)}:latest`],
  ])('accepts %j (a host may have upper case; ports 1..65535; 255 characters)', (ok, full) => {
    expect(formatReference(parseReference(ok))).toBe(full);
  });
});
