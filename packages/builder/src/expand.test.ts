import { describe, expect, it } from 'vitest';
import { ExpansionLimitError, InstructionVars, MAX_EXPANSION, MAX_NESTING, expandArgWords, expandWord, expandWords } from './expand.js';

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
  it('keeps escaped wildcards escaped for a matcher with globEscapes (COPY sources), and only then', () => {
    expect(expandWords('n\\?pe \\[x\\] "$A\\*" a\\\\b \\q', vars, '\\', undefined, { globEscapes: true })).toEqual(['n\\?pe', '\\[x\\]', 'alpha\\*', 'a\\\\b', 'q']);
    expect(expandWords('n`?pe "a`*"', vars, '`', undefined, { globEscapes: true })).toEqual(['n\\?pe', 'a\\*']);
    expect(expandWords('n\\?pe', vars)).toEqual(['n?pe']);
  });
  it('keeps a quoted empty word (COPY "" /dest/ names the whole context)', () => {
    expect(expandWords('"" /dest/', vars)).toEqual(['', '/dest/']);
    expect(expandWords("a '' \"$EMPTY\" b", vars)).toEqual(['a', '', '', 'b']);
  });
});

describe('ARG words', () => {
  it.each([
    ['E=$SPACED', 'one two'],
    ['E="$SPACED"', 'one two'],
    ['E=${SPACED}', 'one two'],
    ["E='$SPACED'", '$SPACED'],
    ['E=${UNSET:-$SPACED}', 'one two'],
    ['E=pre\\ $SPACED', 'pre one two'],
  ])('%s: a default that expands to spaces stays one value (BuildKit expands name and default as one word each)', (arg, want) => {
    expect(expandArgWords(arg, vars)).toEqual([{ name: 'E', value: want }]);
  });

  it('splits the line on whitespace outside quotes only, before expansion', () => {
    expect(expandArgWords('A B=$SPACED C="x y" D=', vars)).toEqual([{ name: 'A' }, { name: 'B', value: 'one two' }, { name: 'C', value: 'x y' }, { name: 'D', value: '' }]);
  });
});

describe('bounds on what an expansion may produce', () => {
  const big = new Map([['A', 'x'.repeat(MAX_EXPANSION / 2 + 1)]]);

  it('a word that would pass MAX_EXPANSION fails before it is built (the ENV A=$A$A bomb)', () => {
    expect(expandWord('$A', big)).toHaveLength(MAX_EXPANSION / 2 + 1);
    expect(() => expandWord('$A$A', big)).toThrow(ExpansionLimitError);
    expect(() => expandWord('"$A$A"', big)).toThrow('variable expansion is too large: more than 1 MiB in one instruction');
    expect(() => expandWord('${U:-$A$A}', big)).toThrow(ExpansionLimitError);
  });

  it('the words of one call count together: EXPOSE $A $A fails', () => {
    expect(() => expandWords('$A $A', big)).toThrow(ExpansionLimitError);
  });

  it('InstructionVars bounds every expansion of one instruction in all', () => {
    const vars = new InstructionVars([['A', 'x'.repeat(MAX_EXPANSION / 4)]]);
    for (let i = 0; i < 4; i++) expect(expandWord('$A', vars)).toHaveLength(MAX_EXPANSION / 4);
    expect(() => expandWord('$A', vars)).toThrow(ExpansionLimitError);
    // A fresh instruction starts with the whole budget again.
    expect(expandWord('$A', new InstructionVars(vars))).toHaveLength(MAX_EXPANSION / 4);
  });

  it(`substitutions nest at most ${MAX_NESTING} deep: a one-line error, not a stack overflow`, () => {
    const nest = (n: number) => `\${A:-`.repeat(n) + 'x' + '}'.repeat(n);
    expect(expandWord(nest(MAX_NESTING), new Map())).toBe('x');
    expect(() => expandWord(nest(MAX_NESTING + 1), new Map())).toThrow(`variable substitutions nested more than ${MAX_NESTING} deep`);
    expect(() => expandWord(nest(100_000), new Map())).toThrow(ExpansionLimitError);
  });

  it('an unset-variable message quotes at most a short piece of a long substitution', () => {
    let message = '';
    try {
      expandWord(`\${X:?${'m'.repeat(100_000)}}`, new Map());
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^X: m+…$/);
    expect(message.length).toBeLessThan(120);
  });
});
