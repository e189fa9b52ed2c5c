import { describe, expect, it } from 'vitest';
import { MS } from '@tsbuild/linux';
import { mountCall, shortenOverlayData } from './mount-spec.js';

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

describe('shortenOverlayData', () => {
  it('leaves data that fits in a page alone', () => {
    expect(shortenOverlayData('lowerdir=/s/1/fs,upperdir=/s/2/fs,workdir=/s/2/work')).toBeUndefined();
  });

  it('makes layer paths relative to their common directory when the data exceeds a page', () => {
    const lowers = Array.from({ length: 150 }, (_, i) => `/var/lib/tsbuild/snapshots/${1000 + i}/fs`);
    const data = `index=off,lowerdir=${lowers.join(':')},upperdir=/var/lib/tsbuild/snapshots/9999/fs,workdir=/var/lib/tsbuild/snapshots/9999/work`;
    expect(data.length).toBeGreaterThan(4095);
    const short = shortenOverlayData(data);
    expect(short?.cwd).toBe('/var/lib/tsbuild/snapshots');
    expect(short?.data).toBe(`index=off,lowerdir=${lowers.map((l) => l.slice('/var/lib/tsbuild/snapshots/'.length)).join(':')},upperdir=9999/fs,workdir=9999/work`);
    expect(short && short.data.length < 4096).toBe(true);
  });
});
