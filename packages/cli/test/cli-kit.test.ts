import { describe, expect, it, vi } from 'vitest';
import { Args, CliError, Command, Flags, HelpRequest, commandHelp, parseArgv, type ParseSpec } from '../src/cli-kit.js';

// What the commands print (print.ts writes fd 1 directly, out of a test's reach).
const printed = vi.hoisted(() => [] as string[]);
vi.mock('../src/print.js', () => ({ print: (s: string) => void printed.push(s) }));

const spec: ParseSpec = {
  strict: true,
  env: { TEST_ROOT: '/from/env' },
  args: { image: Args.string({ required: true }), context: Args.string({ default: '.' }) },
  flags: {
    file: Flags.string({ char: 'f' }),
    tag: Flags.string({ char: 't', multiple: true }),
    quiet: Flags.boolean({ char: 'q' }),
    interactive: Flags.boolean({ char: 'i' }),
    'tls-verify': Flags.boolean({ allowNo: true }),
    layers: Flags.boolean({ allowNo: true, default: true }),
    format: Flags.string({ options: ['oci', 'docker'], default: 'oci' }),
    'pids-limit': Flags.integer({}),
    jobs: Flags.integer({ min: 1 }),
    root: Flags.string({ env: 'TEST_ROOT', default: '/var/lib/x' }),
  },
};

function usage(argv: string[], s: ParseSpec = spec): string {
  try {
    parseArgv(argv, s);
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    expect((e as CliError).exitCode).toBe(2);
    return (e as CliError).message;
  }
  throw new Error(`no usage error for ${argv.join(' ')}`);
}

describe('parseArgv', () => {
  it('takes long flags as --name value and --name=value, and positionals around them', () => {
    const r = parseArgv(['--file', 'D', 'img', '--format=docker', 'ctx'], spec);
    expect(r.flags).toMatchObject({ file: 'D', format: 'docker' });
    expect(r.args).toEqual({ image: 'img', context: 'ctx' });
    expect(r.argv).toEqual(['img', 'ctx']);
  });

  it('fills defaults and the environment, and unset booleans are false unless they take --no-', () => {
    const r = parseArgv(['img'], spec);
    expect(r.flags).toEqual({ quiet: false, interactive: false, layers: true, format: 'oci', root: '/from/env' });
    expect(r.args.context).toBe('.');
    expect(parseArgv(['img', '--root', '/cli'], spec).flags.root).toBe('/cli');
    expect(parseArgv(['img'], { ...spec, env: {} }).flags.root).toBe('/var/lib/x');
  });

  it('repeats multiple flags, one value each (never swallowing the next argument), last wins otherwise', () => {
    const r = parseArgv(['-t', 'a', '--tag', 'b', '--tag=c', 'img', '-f', 'x', '-f', 'y'], spec);
    expect(r.flags.tag).toEqual(['a', 'b', 'c']);
    expect(r.flags.file).toBe('y');
    expect(r.args.image).toBe('img');
  });

  it('groups short booleans and takes -fVALUE, -f=VALUE and -f VALUE', () => {
    expect(parseArgv(['-iq', 'img'], spec).flags).toMatchObject({ interactive: true, quiet: true });
    expect(parseArgv(['-qfD', 'img'], spec).flags).toMatchObject({ quiet: true, file: 'D' });
    expect(parseArgv(['-f=D', 'img'], spec).flags.file).toBe('D');
    expect(parseArgv(['-qf', 'D', 'img'], spec).flags.file).toBe('D');
  });

  it('spells booleans as podman does: --x, --x=true, --x=false, and --no-x where allowed', () => {
    expect(parseArgv(['img', '--tls-verify=false'], spec).flags['tls-verify']).toBe(false);
    expect(parseArgv(['img', '--no-tls-verify'], spec).flags['tls-verify']).toBe(false);
    expect(parseArgv(['img', '--tls-verify'], spec).flags['tls-verify']).toBe(true);
    expect(parseArgv(['img', '--layers=false'], spec).flags.layers).toBe(false);
    expect(parseArgv(['img', '--quiet=true'], spec).flags.quiet).toBe(true);
    expect(usage(['img', '--no-quiet'])).toBe('Nonexistent flag: --no-quiet');
    expect(usage(['img', '--quiet=maybe'])).toBe('--quiet=maybe: want true or false');
  });

  it('takes values that look like flags after an option (--pids-limit -1) and ends flags at --', () => {
    expect(parseArgv(['img', '--pids-limit', '-1'], spec).flags['pids-limit']).toBe(-1);
    const r = parseArgv(['--', '-img', '--file'], spec);
    expect(r.args).toEqual({ image: '-img', context: '--file' });
    expect(parseArgv(['-', '-'], spec).args).toEqual({ image: '-', context: '-' });
  });

  it('says what is wrong, as a usage error', () => {
    expect(usage(['img', '--nope'])).toBe('Nonexistent flag: --nope');
    expect(usage(['img', '-z'])).toBe('Nonexistent flag: -z');
    expect(usage(['img', '--file'])).toBe('Flag --file expects a value');
    expect(usage([])).toBe('Missing 1 required arg: IMAGE');
    expect(usage(['a', 'b', 'c'])).toBe('Unexpected argument: c');
    expect(usage(['img', '--format', 'xml'])).toBe('Expected --format=xml to be one of: oci, docker');
    expect(usage(['img', '--pids-limit', '1.5'])).toBe('Expected an integer for --pids-limit but received: 1.5');
    expect(usage(['img', '--jobs', '0'])).toBe('Expected an integer for --jobs of at least 1 but received: 0');
  });

  it('with interspersed false, flags end at the first positional (run IMAGE CMD…)', () => {
    const r = parseArgv(['-q', '--file', 'D', 'img', 'sh', '-c', 'echo --help', '--tag', 'x'], { ...spec, strict: false, interspersed: false });
    expect(r.flags).toMatchObject({ quiet: true, file: 'D' });
    expect(r.flags.tag).toBeUndefined();
    expect(r.argv).toEqual(['img', 'sh', '-c', 'echo --help', '--tag', 'x']);
    expect(parseArgv(['-q', '--', '-img', '-x'], { ...spec, strict: false, interspersed: false }).argv).toEqual(['-img', '-x']);
    expect(() => parseArgv(['--help', 'img'], { ...spec, interspersed: false })).toThrow(HelpRequest);
  });

  it('keeps extra positionals when not strict', () => {
    expect(parseArgv(['a', 'b', 'c'], { ...spec, strict: false }).argv).toEqual(['a', 'b', 'c']);
  });

  it('asks for help on --help and -h', () => {
    expect(() => parseArgv(['img', '--help'], spec)).toThrow(HelpRequest);
    expect(() => parseArgv(['-h'], spec)).toThrow(HelpRequest);
  });
});

describe('help', () => {
  class Demo extends Command {
    static override id = 'demo';
    static override summary = 'Do a demo';
    static override description = 'A longer text.';
    static override examples = ['<%= config.bin %> demo -t x'];
    static override args = { image: Args.string({ description: 'the image', required: true }) };
    static override flags = {
      tag: Flags.string({ char: 't', description: 'a name', multiple: true }),
      'tls-verify': Flags.boolean({ allowNo: true, description: 'verify', helpGroup: 'REGISTRY' }),
    };
    async run(): Promise<void> {}
  }

  it('lists usage, arguments, flags by group, description and examples', () => {
    const h = commandHelp(Demo, 100);
    expect(h).toContain('USAGE\n  $ tsbuild demo IMAGE [FLAGS]\n');
    expect(h).toMatch(/ARGUMENTS\n {2}IMAGE +the image\n/);
    expect(h).toMatch(/FLAGS\n {2}-t, --tag=<value>\.\.\. +a name\n/);
    expect(h).toMatch(/REGISTRY FLAGS\n {6}--\[no-\]tls-verify +verify\n/);
    expect(h).toContain('DESCRIPTION\n  A longer text.\n');
    expect(h).toContain('EXAMPLES\n  $ tsbuild demo -t x\n');
  });

  it('run() prints help for --help (status 0), and turns usage errors into status 2', async () => {
    const writes: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    printed.length = 0;
    process.stderr.write = ((s: string) => (writes.push(s), true)) as typeof process.stderr.write;
    try {
      expect(await Demo.run(['--help'])).toBe(0);
      expect(await Demo.run([])).toBe(2);
    } finally {
      process.stderr.write = orig;
    }
    expect(printed.join('')).toBe(commandHelp(Demo));
    expect(writes.join('')).toBe('Error: Missing 1 required arg: IMAGE (see: tsbuild demo --help)\n');
  });
});
