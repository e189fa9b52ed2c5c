import { type Platform, hostPlatform } from '@tsbuild/oci';
import { type BuildOptions, globalArgValues, loadDockerfile } from '../build.js';
import { type Stage } from '../dockerfile.js';
import { InstructionVars, expandWord, splitRaw } from '../expand.js';
import { BuildChecks } from './reporter.js';
import { type CheckFinding, basePlatform, undefinedVars } from './rules.js';
import { runStaticChecks } from './static-checks.js';

/**
 * `tsbuild build --check`: the build checks without the build. The rules that need a base
 * image (UndefinedVar, InvalidBaseImagePlatform) use the image in the local store and never
 * pull: a stage whose base is not stored is not checked by them (BuildKit would fetch the
 * image's config). Nothing is written.
 */
export async function checkBuild(options: BuildOptions): Promise<CheckFinding[]> {
  const { opts, parsed } = await loadDockerfile(options);
  const checks = new BuildChecks(parsed);
  await runStaticChecks(opts, parsed, checks);
  if (!checks.enabled) return checks.findings;
  const target: Platform = opts.platform ?? hostPlatform();
  // The build reports an ARG it cannot expand; the checks go on without it.
  const globals = globalArgValues(parsed, opts.buildArgs, target, () => {});
  const envs = new Map<number, Set<string>>();
  for (const stage of parsed.stages) {
    const base = await baseEnv(stage);
    if (!base) continue;
    checks.report(undefinedVars(parsed, stage, base));
    const env = new Set(base);
    for (const ins of stage.instructions) {
      if (ins.keyword !== 'ENV') continue;
      const words = splitRaw(ins.args, parsed.escape);
      if (words[0] !== undefined && !words[0].includes('=')) env.add(words[0]);
      else for (const w of words) env.add(w.split('=', 1)[0]!);
    }
    envs.set(stage.index, env);
  }
  return checks.findings;

  async function baseEnv(stage: Stage): Promise<Set<string> | undefined> {
    let name: string;
    try {
      name = expandWord(splitRaw(stage.from.args, parsed.escape)[0] ?? '', new InstructionVars(globals), parsed.escape);
    } catch {
      return undefined;
    }
    if (name === 'scratch') return new Set(['PATH']);
    const earlier = parsed.stages.find((s) => s.index < stage.index && (s.name === name.toLowerCase() || String(s.index) === name));
    if (earlier) return envs.get(earlier.index);
    if (stage.from.flags.has('platform')) return undefined;
    try {
      const { descriptor } = await opts.store.resolve(name);
      const config = await opts.store.image(descriptor).config();
      checks.report([basePlatform(stage.from, name, target, config)]);
      const env = new Set((config.config?.Env ?? []).map((e) => e.split('=', 1)[0]!));
      env.add('PATH');
      return env;
    } catch {
      return undefined;
    }
  }
}
