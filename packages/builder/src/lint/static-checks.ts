import path from 'node:path';
import { contextIgnores } from '@tsbuild/container';
import type { ParsedDockerfile } from '../dockerfile.js';
import type { BuildChecks } from './reporter.js';
import { copyIgnored, lintDockerfile } from './rules.js';

/**
 * The checks a build runs once before its first step: the Dockerfile's own rules, and
 * CopyIgnoredFile against the ignore file the build context will use (read only when some
 * COPY or ADD takes from the context).
 */
export async function runStaticChecks(opts: { context: string; dockerfile?: string; dockerfileText?: string }, df: ParsedDockerfile, checks: BuildChecks): Promise<void> {
  if (!checks.enabled) return;
  checks.report(lintDockerfile(df));
  const fromContext = df.stages.some((s) => s.instructions.some((i) => (i.keyword === 'COPY' || i.keyword === 'ADD') && !i.flags.has('from')));
  if (!fromContext) return;
  // The same ignore file BuildContext.open picks: the Dockerfile's own first.
  const dockerfile = opts.dockerfile ?? (opts.dockerfileText === undefined ? path.join(opts.context, 'Dockerfile') : undefined);
  const ignored = await contextIgnores(opts.context, dockerfile).catch(() => undefined);
  if (ignored) checks.report(copyIgnored(df, df.stages, ignored));
}
