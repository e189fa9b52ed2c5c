import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, NotFoundError } from '@tsbuild/oci';
import { DockerfileError, MAX_DOCKERFILE_SIZE, MAX_LINE_LENGTH, atLine, parseDockerfile, withContext } from './dockerfile.js';

describe('parseDockerfile', () => {
  it('splits stages and keeps 1-based lines', () => {
    const df = parseDockerfile('ARG V=1\nFROM busybox AS Base\nRUN true\n\nFROM base\nCMD ["sh"]\n');
    expect(df.globalArgs.map((a) => a.args)).toEqual(['V=1']);
    expect(df.stages).toHaveLength(2);
    expect(df.stages[0]!.name).toBe('base');
    expect(df.stages[0]!.from.line).toBe(2);
    expect(df.stages[0]!.instructions[0]).toMatchObject({ keyword: 'RUN', line: 3, args: 'true' });
    expect(df.stages[1]!.instructions[0]!.json).toEqual(['sh']);
  });

  it('joins continuations and drops comment and empty lines inside them', () => {
    const df = parseDockerfile('FROM scratch\nRUN echo a \\\n  # a comment\n\n  && echo b\n');
    expect(df.stages[0]!.instructions[0]!.args).toBe('echo a   && echo b');
  });

  it.each([
    ['FROM scratch\nRUN echo a \\', 'echo a'],
    ['FROM scratch\nRUN echo a \\\n', 'echo a'],
    ['FROM scratch\nRUN echo a \\ \t', 'echo a'],
    ['FROM scratch\nRUN echo a \\\n  b \\', 'echo a   b'],
    ['FROM scratch\nRUN echo a \\\n\n# end', 'echo a'],
    ['# escape=`\nFROM scratch\nRUN echo a `', 'echo a'],
  ])('%j: a continuation at the end of the file is dropped, as BuildKit\'s parser drops it', (text, args) => {
    expect(parseDockerfile(text).stages[0]!.instructions[0]!.args).toBe(args);
  });

  it('reads leading flags, repeated ones kept', () => {
    const df = parseDockerfile('FROM scratch\nCOPY --chown=1:2 --chmod=755 a b /dst/\n');
    const c = df.stages[0]!.instructions[0]!;
    expect(c.flags.get('chown')).toEqual(['1:2']);
    expect(c.flags.get('chmod')).toEqual(['755']);
    expect(c.args).toBe('a b /dst/');
  });

  it('tells exec form from shell form', () => {
    const df = parseDockerfile('FROM scratch\nCMD ["echo", "a b"]\nCMD [not json]\nCMD echo hi\n');
    const [a, b, c] = df.stages[0]!.instructions;
    expect(a!.json).toEqual(['echo', 'a b']);
    expect(b!.json).toBeUndefined();
    expect(c!.json).toBeUndefined();
  });

  it('honours the escape directive', () => {
    const df = parseDockerfile('# escape=`\nFROM scratch\nRUN dir `\n  c:\\\n');
    expect(df.escape).toBe('`');
    expect(df.stages[0]!.instructions[0]!.args).toBe('dir   c:\\');
  });

  it('names file:line for an unknown instruction', () => {
    expect(() => parseDockerfile('FROM scratch\nRUN true\nBOGUS x\n', 'Dockerfile')).toThrow('Dockerfile:3:1: unknown instruction: BOGUS');
  });

  it('rejects instructions before FROM and an empty file', () => {
    expect(() => parseDockerfile('RUN true\nFROM scratch\n')).toThrow('Dockerfile:1: no build stage in current context');
    expect(() => parseDockerfile('# only a comment\n')).toThrow(/needs a FROM/);
  });

  it('rejects a malformed FROM', () => {
    expect(() => parseDockerfile('FROM a b\n')).toThrow('Dockerfile:1: FROM requires either one or three arguments');
  });
});

describe('heredocs', () => {
  it('reads bodies in marker order, quoted delimiters turn expansion off, <<- strips tabs', () => {
    const df = parseDockerfile('FROM scratch\nRUN <<EOF\necho hi\necho $X\nEOF\nCOPY <<A <<"B" /dst/\na $X\nA\nb $X\nB\nRUN <<-EOT cat > /f\n\ttabbed\n\tEOT\nCMD x\n');
    const [run, copy, run2, cmd] = df.stages[0]!.instructions;
    expect(run!.args).toBe('<<EOF');
    expect(run!.heredocs).toEqual([{ name: 'EOF', content: 'echo hi\necho $X\n', expand: true }]);
    expect(copy!.heredocs).toEqual([
      { name: 'A', content: 'a $X\n', expand: true },
      { name: 'B', content: 'b $X\n', expand: false },
    ]);
    expect(run2!.heredocs).toEqual([{ name: 'EOT', content: 'tabbed\n', expand: true }]);
    expect(cmd).toMatchObject({ keyword: 'CMD', line: 14, args: 'x' });
  });

  it('an unterminated heredoc names its line', () => {
    expect(() => parseDockerfile('FROM scratch\nRUN <<EOF\necho hi\n')).toThrow('Dockerfile:2:5: unterminated heredoc <<EOF');
  });
});

describe('bounds on the Dockerfile itself', () => {
  it(`refuses more than ${MAX_DOCKERFILE_SIZE} bytes, naming the line where the limit falls`, () => {
    const content = 'FROM scratch\n' + '# filler\n'.repeat(MAX_DOCKERFILE_SIZE / 9 + 1);
    const line = content.slice(0, MAX_DOCKERFILE_SIZE).split('\n').length;
    expect(() => parseDockerfile(content)).toThrow(`Dockerfile:${line}: the Dockerfile is larger than 1 MiB, the most tsbuild reads`);
    // Counted in bytes: multi-byte characters count as what they take on disk.
    expect(() => parseDockerfile(`FROM scratch\nLABEL a="${'é'.repeat(MAX_DOCKERFILE_SIZE / 2)}"\n`)).toThrow('Dockerfile:2: the Dockerfile is larger');
    expect(parseDockerfile('FROM scratch\n' + '#\n'.repeat(1000)).stages).toHaveLength(1);
  });

  it(`refuses an instruction longer than ${MAX_LINE_LENGTH >> 10} KiB once continuations are joined`, () => {
    const long = 'FROM scratch\nRUN true \\\n' + `  && echo ${'a'.repeat(1000)} \\\n`.repeat(MAX_LINE_LENGTH / 1000) + '  && true\nCMD x\n';
    expect(() => parseDockerfile(long)).toThrow('Dockerfile:2:1: RUN: the instruction is longer than 256 KiB');
    expect(parseDockerfile(`FROM scratch\nRUN echo ${'a'.repeat(MAX_LINE_LENGTH - 20)}\n`).stages[0]!.instructions).toHaveLength(1);
  });
});

describe('errors located at a Dockerfile line', () => {
  it('keep their kind and their cause', () => {
    const cause = new NotFoundError('no such user');
    const e = atLine('Dockerfile', 3, cause) as Error;
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toBe('Dockerfile:3: no such user');
    expect(e.cause).toBe(cause);
  });

  it('a system error keeps its code (ENOSPC), with what was being done', () => {
    const cause = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    const e = atLine('Dockerfile', 2, withContext(cause, 'writing the layer of step 2'), 'COPY big /big') as NodeJS.ErrnoException;
    expect(e.message).toBe('Dockerfile:2: COPY big /big: writing the layer of step 2: ENOSPC: no space left on device, write');
    expect(e.code).toBe('ENOSPC');
    expect(e.errno).toBe(-28);
  });

  it('name the line once, however often they are located', () => {
    const once = atLine('Dockerfile', 3, new InvalidArgumentError('bad'));
    expect(atLine('Dockerfile', 1, once)).toBe(once);
    const df = new DockerfileError('Dockerfile', 4, 'bad');
    expect(atLine('Dockerfile', 1, df)).toBe(df);
  });

  it('leave bugs (errors of no kind) as they are', () => {
    const bug = new TypeError('x is undefined');
    expect(atLine('Dockerfile', 1, bug)).toBe(bug);
  });
});

describe('# tsbuild:limits', () => {
  it('attaches to the instruction right below it, across other comment lines, and not across a blank line', () => {
    const df = parseDockerfile('FROM scratch\n# tsbuild:limits memory=2g cpus=1 pids=100\n# builds the thing\nRUN make\n# tsbuild:limits memory=1g\n\nRUN other\nRUN last\n');
    const [a, b, c] = df.stages[0]!.instructions;
    expect(a!.limits).toEqual({ memory: 2 * 1024 ** 3, cpus: 1, pidsLimit: 100, line: 2 });
    expect(b!.limits).toBeUndefined();
    expect(c!.limits).toBeUndefined();
    // Not part of the instruction's text: the cache key and history are those of the RUN alone.
    expect(a!.text).toBe('RUN make');
  });

  it('a comment inside a continuation does not attach to the next instruction', () => {
    const df = parseDockerfile('FROM scratch\nRUN a \\\n# tsbuild:limits memory=1g\n  && b\nRUN c\n');
    expect(df.stages[0]!.instructions.map((i) => i.limits)).toEqual([undefined, undefined]);
  });

  it('bad limits are one line naming the directive line', () => {
    const bad = (text: string) => () => parseDockerfile(`FROM scratch\n${text}\nRUN x\n`);
    expect(bad('# tsbuild:limits memory=lots')).toThrow(/^Dockerfile:2: # tsbuild:limits memory=lots: want a size of at least 6m/);
    expect(bad('# tsbuild:limits cpus=0')).toThrow(/^Dockerfile:2: # tsbuild:limits cpus=0: want a positive number/);
    expect(bad('# tsbuild:limits pids=many')).toThrow(/^Dockerfile:2: .*whole number/);
    expect(bad('# tsbuild:limits swap=1g')).toThrow(/^Dockerfile:2: # tsbuild:limits swap=1g: unknown limit/);
    expect(bad('# tsbuild:limits')).toThrow(/^Dockerfile:2: # tsbuild:limits: want memory=SIZE/);
    expect(() => parseDockerfile('FROM scratch\n# tsbuild:limits memory=1g\nCOPY a b\n')).toThrow('Dockerfile:2: # tsbuild:limits applies to a RUN step, not to COPY on line 3');
  });
});
