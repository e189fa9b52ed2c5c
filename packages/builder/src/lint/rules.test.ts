import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../dockerfile.js';
import { checkSettings } from './directive.js';
import { BuildChecks, type CheckEvent } from './reporter.js';
import { basePlatform, copyIgnored, lintDockerfile, undefinedVars } from './rules.js';

const rules = (text: string) => lintDockerfile(parseDockerfile(text)).map((f) => f.rule);
const findings = (text: string, rule: string) => lintDockerfile(parseDockerfile(text)).filter((f) => f.rule === rule);

/** Per rule: a Dockerfile that triggers it (with the line and a piece of the message) and one that does not. */
const CASES: { rule: string; bad: string; line: number; says: string; good: string }[] = [
  { rule: 'JSONArgsRecommended', bad: 'FROM a\nCMD run it\n', line: 2, says: 'JSON arguments recommended for CMD', good: 'FROM a\nCMD ["run", "it"]\nSHELL ["/bin/bash", "-c"]\nENTRYPOINT run it\n' },
  { rule: 'UndefinedArgInFrom', bad: 'ARG VERSION=1\nFROM a:$VERSON\n', line: 2, says: "FROM argument 'VERSON' is not declared (did you mean VERSION?)", good: 'ARG VERSION=1\nFROM a:$VERSION\nFROM --platform=$BUILDPLATFORM b\n' },
  { rule: 'SecretsUsedInArgOrEnv', bad: 'FROM a\nARG API_TOKEN\n', line: 2, says: 'Do not use ARG or ENV instructions for sensitive data (ARG "API_TOKEN")', good: 'FROM a\nARG PUBLIC_KEY\nENV TOKENIZER=x\n' },
  { rule: 'StageNameCasing', bad: 'FROM a AS Build\n', line: 1, says: "Stage name 'Build' should be lowercase", good: 'FROM a AS build\n' },
  { rule: 'FromAsCasing', bad: 'FROM a as build\n', line: 1, says: "'as' and 'FROM' keywords' casing do not match", good: 'FROM a AS build\nfrom b as other\n' },
  { rule: 'DuplicateStageName', bad: 'FROM a AS x\nFROM b AS x\n', line: 2, says: 'Duplicate stage name "x"', good: 'FROM a AS x\nFROM b AS y\n' },
  { rule: 'ReservedStageName', bad: 'FROM a AS scratch\n', line: 1, says: 'reserved stage "scratch"', good: 'FROM a AS base\n' },
  { rule: 'ConsistentInstructionCasing', bad: 'FROM a\nRUN x\nrun y\n', line: 3, says: "Command 'run' should match the case of the command majority (uppercase)", good: 'from a\nrun x\n' },
  { rule: 'MultipleInstructionsDisallowed', bad: 'FROM a\nCMD ["a"]\nCMD ["b"]\n', line: 2, says: 'Multiple CMD instructions should not be used', good: 'FROM a\nCMD ["a"]\nFROM b\nCMD ["b"]\n' },
  { rule: 'LegacyKeyValueFormat', bad: 'FROM a\nENV K some value\n', line: 2, says: '"ENV key=value" should be used instead of legacy "ENV key value" format', good: 'FROM a\nENV K="some value"\nLABEL a=b\n' },
  { rule: 'WorkdirRelativePath', bad: 'FROM a\nWORKDIR app\n', line: 2, says: 'Relative workdir "app" can have unexpected results', good: 'FROM a AS b\nWORKDIR /app\nFROM b\nWORKDIR sub\n' },
  { rule: 'MaintainerDeprecated', bad: 'FROM a\nMAINTAINER me\n', line: 2, says: 'Maintainer instruction is deprecated in favor of using label', good: 'FROM a\nLABEL org.opencontainers.image.authors=me\n' },
  { rule: 'InvalidDefaultArgInFrom', bad: 'ARG TAG\nFROM a:${TAG}\n', line: 2, says: 'Default value for ARG a:${TAG} results in empty or invalid base image name', good: 'ARG TAG=1\nFROM a:${TAG}\n' },
  { rule: 'FromPlatformFlagConstDisallowed', bad: 'FROM --platform=linux/amd64 a\n', line: 1, says: 'FROM --platform flag should not use constant value "linux/amd64"', good: 'FROM --platform=$BUILDPLATFORM a\nFROM --platform=linux/arm64 a AS build-arm64\n' },
  { rule: 'RedundantTargetPlatform', bad: 'FROM --platform=$TARGETPLATFORM a\n', line: 1, says: 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant', good: 'FROM --platform=$BUILDPLATFORM a\n' },
  { rule: 'InvalidDefinitionDescription', bad: '# the builder\nFROM a AS build\n', line: 2, says: 'Comment for build stage should follow the format: `# build <description>`', good: '# build compiles it\nFROM a AS build\n# a note\n\nARG X=1\n' },
  { rule: 'ExposeProtoCasing', bad: 'FROM a\nEXPOSE 80/TcP\n', line: 2, says: "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase", good: 'FROM a\nEXPOSE 80/tcp 53/udp\n' },
  { rule: 'ExposeInvalidFormat', bad: 'FROM a\nEXPOSE 127.0.0.1:80:80\n', line: 2, says: "should not define an IP address or host-port mapping, found '127.0.0.1:80:80'", good: 'FROM a\nEXPOSE 80\n' },
];

describe('build checks over the parsed Dockerfile', () => {
  for (const c of CASES) {
    it(`${c.rule}: reported where it applies, with BuildKit's wording`, () => {
      const f = findings(c.bad, c.rule);
      expect(f).toHaveLength(1);
      expect(f[0]!.line).toBe(c.line);
      expect(f[0]!.message).toContain(c.says);
    });
    it(`${c.rule}: not reported for the good form`, () => {
      expect(rules(c.good)).not.toContain(c.rule);
    });
  }

  it('a well-written Dockerfile has no findings at all', () => {
    expect(rules('# syntax=docker/dockerfile:1\nFROM a AS build\nARG V=1\nWORKDIR /src\nCOPY . .\nRUN make\nFROM scratch\nCOPY --from=build /out /\nENTRYPOINT ["/app"]\n')).toEqual([]);
  });

  it('a parser directive right above the first FROM is not a stage description', () => {
    expect(rules('# check=skip=JSONArgsRecommended\nFROM a AS build\n')).not.toContain('InvalidDefinitionDescription');
  });
});

describe('UndefinedVar', () => {
  const stage = (text: string) => {
    const df = parseDockerfile(text);
    return (env: string[] = ['PATH']) => undefinedVars(df, df.stages.at(-1)!, env);
  };

  it('names a variable no ARG, ENV or base image defines, with the likely typo', () => {
    const f = stage('FROM a\nENV PATH=$PAHT:/app/bin\nCOPY $foo .\n')();
    expect(f.map((x) => [x.line, x.message])).toEqual([
      [2, "Usage of undefined variable '$PAHT' (did you mean $PATH?)"],
      [3, "Usage of undefined variable '$foo'"],
    ]);
  });

  it('is quiet for declared ARGs, earlier ENVs, the base image env, defaults and shell-expanded RUN', () => {
    const f = stage("FROM a\nARG foo\nENV X=1\nCOPY $foo $X $GOPATH ${UNSET:-d} '$quoted' /dst/\nRUN echo $ANYTHING\nCMD echo $SHELLVAR\n")(['PATH', 'GOPATH']);
    expect(f).toEqual([]);
  });

  it('global ARGs are not in scope in a stage until declared there', () => {
    expect(stage('ARG V=1\nFROM a\nLABEL v=$V\n')().map((x) => x.rule)).toEqual(['UndefinedVar']);
    expect(stage('ARG V=1\nFROM a\nARG V\nLABEL v=$V\n')()).toEqual([]);
  });
});

describe('CopyIgnoredFile', () => {
  it('names a COPY source the ignore rules exclude, not other sources or COPY --from', () => {
    const df = parseDockerfile('FROM a\nCOPY ./secret.txt app.js /app/\nCOPY --from=b secret.txt /x\nADD secret.txt /y\n');
    const f = copyIgnored(df, df.stages, (rel) => rel === 'secret.txt');
    expect(f.map((x) => [x.line, x.message])).toEqual([
      [2, 'Attempting to Copy file "./secret.txt" that is excluded by .dockerignore'],
      [4, 'Attempting to Add file "secret.txt" that is excluded by .dockerignore'],
    ]);
    expect(copyIgnored(df, df.stages, () => false)).toEqual([]);
  });
});

describe('InvalidBaseImagePlatform', () => {
  const from = parseDockerfile('FROM a\n').stages[0]!.from;
  it('names the image, its platform and the expected one', () => {
    expect(basePlatform(from, 'a', { os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' })?.message).toBe(
      'Base image a was pulled with platform "linux/arm64/v8", expected "linux/amd64" for current build',
    );
  });
  it('is quiet when the platforms match, an arm64 image without variant included', () => {
    expect(basePlatform(from, 'a', { os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' })).toBeUndefined();
  });
});

describe('# check= directive', () => {
  it('reads skip lists, skip=all and error=true as BuildKit does', () => {
    expect(checkSettings(' skip = JSONArgsRecommended, StageNameCasing ;error=true')).toEqual({ skip: new Set(['JSONArgsRecommended', 'StageNameCasing']), skipAll: false, error: true });
    expect(checkSettings('skip=all').skipAll).toBe(true);
    expect(checkSettings(undefined)).toEqual({ skip: new Set(), skipAll: false, error: false });
  });

  it('skipped rules are not reported; error=true fails once findings are reported, naming the rules', () => {
    const df = parseDockerfile('# check=skip=StageNameCasing;error=true\nFROM a AS B\nCMD x\n');
    const events: CheckEvent[] = [];
    const checks = new BuildChecks(df, (e) => events.push(e));
    checks.report(lintDockerfile(df));
    expect(events).toEqual([{ type: 'check', rule: 'JSONArgsRecommended', line: 3, message: expect.stringContaining('CMD') as string, error: true }]);
    expect(() => checks.failIfFound()).toThrow('lint violation found for rules: JSONArgsRecommended');
  });

  it('without error=true, findings do not fail; skip=all reports nothing', () => {
    const warn = new BuildChecks(parseDockerfile('FROM a\nCMD x\n'));
    warn.report(lintDockerfile(parseDockerfile('FROM a\nCMD x\n')));
    expect(warn.findings).toHaveLength(1);
    expect(() => warn.failIfFound()).not.toThrow();
    const none = new BuildChecks(parseDockerfile('# check=skip=all;error=true\nFROM a\nCMD x\n'));
    none.report([{ rule: 'JSONArgsRecommended', line: 3, message: 'x' }]);
    expect(none.findings).toEqual([]);
    expect(() => none.failIfFound()).not.toThrow();
  });
});
