import { describe, expect, it } from 'vitest';
import type { Instruction } from '../dockerfile.js';
import { parseDuration } from './checks.js';

const ins = { keyword: 'HEALTHCHECK', line: 4 } as Instruction;

describe('HEALTHCHECK durations (one parser with `config --healthcheck-*`: Go\'s time.ParseDuration)', () => {
  it('takes what Go takes, in nanoseconds', () => {
    expect(parseDuration(ins, 'interval', '30s', 'Dockerfile')).toBe(30e9);
    expect(parseDuration(ins, 'interval', '1m30s', 'Dockerfile')).toBe(90e9);
    expect(parseDuration(ins, 'interval', '.5s', 'Dockerfile')).toBe(5e8);
    expect(parseDuration(ins, 'timeout', '1500\u00b5s', 'Dockerfile')).toBe(1.5e6);
    expect(parseDuration(ins, 'start-period', '0', 'Dockerfile')).toBe(0);
  });

  it('refuses the rest at its line: no duration, a negative one, one under 1ms', () => {
    expect(() => parseDuration(ins, 'interval', 'soon', 'Dockerfile')).toThrow('Dockerfile:4: HEALTHCHECK --interval=soon: want a duration such as 30s or 1m30s');
    expect(() => parseDuration(ins, 'interval', '30', 'Dockerfile')).toThrow('Dockerfile:4: HEALTHCHECK --interval=30: want a duration such as 30s or 1m30s');
    expect(() => parseDuration(ins, 'interval', '-1s', 'Dockerfile')).toThrow('Dockerfile:4: HEALTHCHECK --interval=-1s: want a duration such as 30s or 1m30s');
    expect(() => parseDuration(ins, 'timeout', '500us', 'Dockerfile')).toThrow('Dockerfile:4: HEALTHCHECK --timeout=500us: must be at least 1ms');
  });
});
