import { BIN, CliError, Flags, type FlagDefs } from './cli-kit.js';

/**
 * The flags every command takes (buildah's persistent flags: `buildah --root DIR images`). They
 * may come before the command as well as after it, with the same meaning: main.ts moves the ones
 * given before it in front of the command's own arguments, and the command parses them as if they
 * had been written there.
 *
 * This module stays light (cli-kit only): main.ts imports it for every command, so the store's
 * defaultStoreRoot() is added to `root` by base-command.ts, not here.
 */
export const globalFlags = {
  root: Flags.string({
    description: 'store root directory',
    env: 'TSBUILD_ROOT',
    helpGroup: 'GLOBAL',
  }),
} satisfies FlagDefs;

/**
 * Splits `tsbuild [GLOBAL FLAGS] COMMAND …` into the global flags, as written (their values are
 * checked by the command's parser, the same as after the command), and the rest. The split stops
 * at the first word that is not a flag, and before `--help`/`-h`/`--version`/`-v`, which main.ts
 * answers. Anything else that looks like a flag there is a usage error: a command's own flag
 * belongs after the command.
 */
export function splitGlobalFlags(argv: readonly string[], defs: FlagDefs = globalFlags): { globals: string[]; rest: string[] } {
  const globals: string[] = [];
  const byChar = new Map(Object.values(defs).flatMap((f) => (f.char ? [[f.char, f] as const] : [])));
  const unknown = (spelled: string) =>
    new CliError(`unknown global flag ${spelled}: before the command ${BIN} takes only ${Object.keys(defs).map((n) => `--${n}`).join(', ')} (a command's own flags go after it; see: ${BIN} --help)`, 2);
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-' || ['--help', '-h', '--version', '-v'].includes(a)) break;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const f = defs[name] ?? (name.startsWith('no-') && defs[name.slice(3)]?.type === 'boolean' ? defs[name.slice(3)] : undefined);
      if (f === undefined) throw unknown(eq < 0 ? a : a.slice(0, eq));
      globals.push(a);
      if (f.type === 'option' && eq < 0) {
        if (i + 1 >= argv.length) throw new CliError(`Flag ${a} expects a value`, 2);
        globals.push(argv[++i]!);
      }
      continue;
    }
    // -abc: booleans clustered, or one option with its value attached (-rDIR) or next (-r DIR).
    for (let k = 1; k < a.length; k++) {
      const f = byChar.get(a[k]!);
      if (f === undefined) throw unknown(`-${a[k]}`);
      if (f.type === 'option') {
        if (k === a.length - 1) {
          if (i + 1 >= argv.length) throw new CliError(`Flag -${a[k]} expects a value`, 2);
          globals.push(a, argv[++i]!);
        } else globals.push(a);
        break;
      }
      if (k === a.length - 1) globals.push(a);
    }
  }
  return { globals, rest: argv.slice(i) };
}
