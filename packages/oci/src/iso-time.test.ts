import { describe, expect, it } from 'vitest';
import { isoTime } from './iso-time.js';

describe('isoTime', () => {
  it('writes what toISOString writes, edges and random times alike', () => {
    const last = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    const edges = [0, 1, 999, 86_399_999, Date.UTC(2000, 1, 29), Date.UTC(2024, 1, 29, 12, 30, 5, 7), last, -1, Date.UTC(0, 0, 1) - 1, last + 1, 8.64e15];
    for (const ms of [...edges, ...Array.from({ length: 20_000 }, () => Math.floor(Math.random() * last))]) {
      expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('is now by default, and an invalid time is a RangeError as with toISOString', () => {
    const before = Date.now();
    const t = Date.parse(isoTime());
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  });
});
