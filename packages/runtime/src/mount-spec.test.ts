import { describe, expect, it } from 'vitest';
import { MS } from '@tsbuild/linux';
import { mountCall } from './mount-spec.js';

describe('mountCall', () => {
  it('turns flag options into mount(2) flags and keeps the rest as data', () => {
    expect(mountCall({ type: 'overlay', source: 'overlay', options: ['index=off', 'ro', 'nosuid', 'lowerdir=/a:/b', 'upperdir=/u', 'workdir=/w'] })).toEqual({
      flags: MS.RDONLY | MS.NOSUID,
      data: 'index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w',
    });
  });

  it('makes a bind recursive with rbind, and rw clears an earlier ro', () => {
    expect(mountCall({ type: 'bind', source: '/d', options: ['rbind', 'ro'] })).toEqual({ flags: MS.BIND | MS.REC | MS.RDONLY, data: '' });
    expect(mountCall({ type: 'bind', source: '/d', options: ['ro', 'rw'] })).toEqual({ flags: MS.BIND, data: '' });
  });
});
