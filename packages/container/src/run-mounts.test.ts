import { describe, expect, it } from 'vitest';
import { cacheMountDirName, parseRunMount } from './run-mounts.js';

describe('parseRunMount', () => {
  it.each([
    ['type=cache,target=/root/.cache', '/', { type: 'cache', target: '/root/.cache', id: '/root/.cache', sharing: 'shared', mode: 0o755, uid: 0, gid: 0, readonly: false }],
    ['type=cache,target=c,id=go,sharing=locked,mode=0700,uid=5,gid=6', '/w', { type: 'cache', target: '/w/c', id: 'go', sharing: 'locked', mode: 0o700, uid: 5, gid: 6, readonly: false }],
    ['target=/src', '/', { type: 'bind', target: '/src', source: '/', readwrite: false }],
    ['type=bind,from=build,source=/out,target=/in,rw', '/', { type: 'bind', target: '/in', source: '/out', from: 'build', readwrite: true }],
    ['type=tmpfs,target=/t,size=1m', '/', { type: 'tmpfs', target: '/t', size: '1m' }],
    ['type=secret,id=tok', '/', { type: 'secret', id: 'tok', target: '/run/secrets/tok', required: false, mode: 0o400, uid: 0, gid: 0 }],
    ['type=secret,target=/etc/key,required=true,mode=0440,uid=1', '/', { type: 'secret', id: 'key', target: '/etc/key', required: true, mode: 0o440, uid: 1, gid: 0 }],
  ])('%s', (v, cwd, want) => {
    expect(parseRunMount(v, cwd)).toEqual(want);
  });

  it.each([
    ['type=nfs,target=/x', 'unknown mount type "nfs"'],
    ['type=cache', 'target= is required for type=cache'],
    ['type=cache,target=/x,sharing=maybe', 'sharing=maybe: want shared, private or locked'],
    ['type=tmpfs,target=/x,id=1', 'unknown option "id" for type=tmpfs'],
    ['type=ssh', 'type=ssh is not supported'],
    ['type=cache,target=/x,mode=999', 'mode=999: want an octal mode'],
  ])('rejects %s', (v, msg) => {
    expect(() => parseRunMount(v, '/')).toThrow(msg);
  });

  it('names cache directories readably and without collisions', () => {
    expect(cacheMountDirName('/root/.cache')).toMatch(/^root_.cache-[0-9a-f]{12}$/);
    expect(cacheMountDirName('a/b')).not.toBe(cacheMountDirName('a_b'));
  });
});
