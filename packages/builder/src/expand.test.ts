import { describe, expect, it } from 'vitest';
import { expandWord, expandWords } from './expand.js';

const vars = new Map([
  ['A', 'alpha'],
  ['EMPTY', ''],
  ['SPACED', 'one two'],
]);

describe('variable substitution (Dockerfile reference)', () => {
  it.each([
    ['$A', 'alpha'],
    ['${A}', 'alpha'],
    ['x${A}y', 'xalphay'],
    ['$UNSET', ''],
    ['${UNSET:-dflt}', 'dflt'],
    ['${EMPTY:-dflt}', 'dflt'],
    ['${EMPTY-dflt}', ''],
    ['${UNSET-dflt}', 'dflt'],
    ['${A:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${UNSET:-$A}', 'alpha'],
    ["'$A'", '$A'],
    ['"$A"', 'alpha'],
    ['\\$A', '$A'],
    ['"a \\"q\\" b"', 'a "q" b'],
    ['$', '$'],
    ['a$1', 'a'],
  ])('%s → %j', (input, want) => {
    expect(expandWord(input, vars)).toBe(want);
  });

  it('fails on ${VAR:?msg} when unset, naming the message', () => {
    expect(() => expandWord('${UNSET:?must be set}', vars)).toThrow('UNSET: must be set');
    expect(expandWord('${A:?x}', vars)).toBe('alpha');
  });

  it('honours another escape character', () => {
    expect(expandWord('`$A', vars, '`')).toBe('$A');
  });

  it('records which variables a word used', () => {
    const used = new Set<string>();
    expandWord('$A ${B:-x}', vars, '\\', used);
    expect([...used].sort()).toEqual(['A', 'B']);
  });
});

describe('word splitting', () => {
  it('splits unquoted expansions and keeps quoted ones whole', () => {
    expect(expandWords('$SPACED "$SPACED" x', vars)).toEqual(['one', 'two', 'one two', 'x']);
  });
  it('keeps quoted spaces and drops quotes', () => {
    expect(expandWords('"a b" \'c d\' e\\ f', vars)).toEqual(['a b', 'c d', 'e f']);
  });
  it('drops a word that expands to nothing', () => {
    expect(expandWords('a $UNSET b', vars)).toEqual(['a', 'b']);
  });
});
