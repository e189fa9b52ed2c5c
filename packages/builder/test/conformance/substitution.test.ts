import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Built, type Harness, openHarness } from './harness.js';

/**
 * Variable substitution as the Dockerfile reference defines it, observed through LABEL values
 * (expanded at build time, stored verbatim in the config) and RUN's environment.
 */
let h: Harness;
let r: Built;
const cases: [string, string, string][] = [
  // [label expression, expected value, what it shows]
  ['$SET', 'value', '$VAR'],
  ['${SET}', 'value', '${VAR}'],
  ['${SET}suffix', 'valuesuffix', '${VAR} glued to text'],
  ['pre$SET', 'prevalue', '$VAR after text'],
  ['${UNSET}', '', 'an unset variable is empty'],
  ['${UNSET:-dflt}', 'dflt', ':- on unset'],
  ['${EMPTY:-dflt}', 'dflt', ':- on empty'],
  ['${SET:-dflt}', 'value', ':- on set'],
  ['${UNSET-dflt}', 'dflt', '- on unset'],
  ['${EMPTY-dflt}', '', '- keeps empty'],
  ['${SET:+alt}', 'alt', ':+ on set'],
  ['${EMPTY:+alt}', '', ':+ on empty'],
  ['${UNSET:+alt}', '', ':+ on unset'],
  ['${EMPTY+alt}', 'alt', '+ on empty (set)'],
  ['${UNSET+alt}', '', '+ on unset'],
  ['${SET:?must}', 'value', ':? on set'],
  ['${UNSET:-$SET}', 'value', 'nested expansion in the word'],
  ['${UNSET:-${SET}x}', 'valuex', 'nested ${} in the word'],
  ['\\$SET', '$SET', 'escaped dollar'],
  ["'$SET'", '$SET', 'single quotes are literal'],
  ['"$SET"', 'value', 'double quotes expand'],
  ['"a b"', 'a b', 'double quotes keep spaces'],
  ['"\\"q\\""', '"q"', 'escaped quotes in double quotes'],
  ['$SET$SET', 'valuevalue', 'two variables'],
  ['${SPACED}', 'with space', 'a value with spaces'],
  ['$1', '', '$1 is a (never set) positional variable, as in docker'],
  ['$', '$', 'a lone dollar'],
  ['$-x', '$-x', 'a dollar before a non-name character is literal'],
  ['${FROMARG}', 'argval', 'ARG value'],
  ['${OVERRIDDEN}', 'env-wins', 'ENV overrides an ARG of the same name'],
  ['${BUILDARG}', 'from-cli', '--build-arg overrides the ARG default'],
  ['${GLOBAL}', 'global-redeclared', 'a global ARG redeclared in the stage'],
  ['${GLOBAL_NOT_REDECLARED}', '', 'a global ARG not redeclared is not visible in the stage'],
  ['${CHAINED}', 'value-chained', 'ENV using an earlier ENV'],
  ['${SAMELINE2}', 'first', 'ENV a=1 b=$a sees the value before the line'],
];

beforeAll(async () => {
  h = await openHarness('subst');
  const labels = cases.map(([expr], i) => `LABEL l${i}=${expr}`).join('\n');
  r = await h.buildIt(
    {
      Dockerfile: [
        'ARG GLOBAL=global-default',
        'ARG GLOBAL_NOT_REDECLARED=x',
        'FROM busybox',
        'ARG GLOBAL',
        'ENV GLOBAL=${GLOBAL}-redeclared',
        'ENV SET=value EMPTY="" SPACED="with space"',
        'ARG FROMARG=argval',
        'ARG OVERRIDDEN=arg',
        'ENV OVERRIDDEN=env-wins',
        'ARG BUILDARG=default',
        'ENV SAMELINE=first',
        'ENV SAMELINE=second SAMELINE2=$SAMELINE',
        'ENV CHAINED=${SET}-chained',
        labels,
        'RUN echo "$FROMARG $BUILDARG" > /run-env && env > /run-all',
        'ENV LEGACY a value with spaces',
        'WORKDIR /w/$SET',
        'ENV ESC=\\$notexpanded',
        '',
      ].join('\n'),
    },
    { buildArgs: { BUILDARG: 'from-cli', GLOBAL: 'global' } },
  );
});
afterAll(() => h.close());

describe('variable substitution in LABEL', () => {
  it.each(cases.map((c, i) => [i, ...c] as const))('l%i: %s → %j (%s)', (i, _expr, want) => {
    expect(r.config.config?.Labels?.[`l${i}`]).toBe(want);
  });
});

describe('variables elsewhere', () => {
  it('ARGs reach RUN', async () => {
    expect(await r.read('run-env')).toBe('argval from-cli\n');
  });
  it('ARGs are not stored in the image Env', () => {
    expect(r.config.config?.Env?.some((e) => e.startsWith('FROMARG='))).toBe(false);
    expect(r.config.config?.Env?.some((e) => e.startsWith('BUILDARG='))).toBe(false);
  });
  it('ENV values are in RUN\'s environment', async () => {
    expect(await r.read('run-all')).toContain('SPACED=with space\n');
  });
  it('legacy ENV key value with spaces', () => {
    expect(r.config.config?.Env).toContain('LEGACY=a value with spaces');
  });
  it('WORKDIR expands ENV', () => {
    expect(r.config.config?.WorkingDir).toBe('/w/value');
  });
  it('an escaped $ stays literal in ENV', () => {
    expect(r.config.config?.Env).toContain('ESC=$notexpanded');
  });
  it('ENV keeps the empty value', () => {
    expect(r.config.config?.Env).toContain('EMPTY=');
  });
  it('a redefined ENV replaces the earlier value in place', () => {
    expect(r.config.config?.Env?.filter((e) => e.startsWith('SAMELINE='))).toEqual(['SAMELINE=second']);
  });
});
