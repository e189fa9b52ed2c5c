import { describe, expect, it } from 'vitest';
import { shortenOverlayData } from './mount.js';

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
