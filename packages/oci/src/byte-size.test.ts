import { describe, expect, it } from 'vitest';
import { parseByteSize } from './byte-size.js';

describe('parseByteSize (docker flag sizes)', () => {
  it('takes binary units, optional b and i, and fractions', () => {
    expect(parseByteSize('512')).toBe(512);
    expect(parseByteSize('64m')).toBe(64 * 1024 ** 2);
    expect(parseByteSize('1.5g')).toBe(1.5 * 1024 ** 3);
    expect(parseByteSize('2KiB')).toBe(2048);
    expect(parseByteSize('10mb')).toBe(10 * 1024 ** 2);
  });
  it('is undefined for anything else', () => {
    for (const bad of ['', 'm', '-1', '1x', '1 2', '1e3']) expect(parseByteSize(bad)).toBeUndefined();
  });
});
