import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chainId, chainIds } from './chain-id.js';
import type { Digest } from './digest.js';

const d = (c: string): Digest => `sha256:${c.repeat(64)}`;

describe('chainIds (image-spec config.md)', () => {
  it('is the diffID for one layer and hashes "prev diffID" after', () => {
    const ids = chainIds([d('a'), d('b'), d('c')]);
    expect(ids[0]).toBe(d('a'));
    const second = `sha256:${createHash('sha256').update(`${d('a')} ${d('b')}`).digest('hex')}`;
    expect(ids[1]).toBe(second);
    expect(ids[2]).toBe(`sha256:${createHash('sha256').update(`${second} ${d('c')}`).digest('hex')}`);
    expect(chainId([d('a'), d('b'), d('c')])).toBe(ids[2]);
  });
  it('is undefined for no layers', () => {
    expect(chainId([])).toBeUndefined();
  });
});
