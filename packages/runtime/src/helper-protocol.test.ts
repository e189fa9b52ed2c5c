import { describe, expect, it } from 'vitest';
import { EXEC_LINE, PTY_TAKEN_LINE, parsePtyLine, ptyLine } from './helper-protocol.js';

describe('helper protocol', () => {
  it('a pty line carries the helper\'s descriptor number; no other line reads as one', () => {
    expect(parsePtyLine(ptyLine(7))).toBe(7);
    expect(parsePtyLine(ptyLine(1023))).toBe(1023);
    for (const other of [EXEC_LINE, PTY_TAKEN_LINE, '{"error":{"code":"INTERNAL","message":"{\\"pty\\":3}"}}', '{"pty":-1}', '{"pty":"3"}', '']) {
      expect(parsePtyLine(other), other).toBeUndefined();
    }
  });
});
