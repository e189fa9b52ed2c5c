import { FailedPreconditionError } from '@tsbuild/oci';
import type { ParsedDockerfile } from '../dockerfile.js';
import { checkSettings, type CheckSettings } from './directive.js';
import type { CheckFinding } from './rules.js';

/** What a finding becomes for the build's listener (BuildEvent's `check` member). */
export interface CheckEvent {
  type: 'check';
  rule: string;
  line: number;
  message: string;
  /** The Dockerfile says `# check=error=true`: findings fail the build. */
  error: boolean;
}

/**
 * The findings of one build, through the Dockerfile's `# check=` settings: skipped rules are
 * dropped, the rest go to the listener as they are found. With `error=true` the build fails
 * once the checks of a phase have run (failIfFound), as BuildKit's linter does, naming the rules.
 */
export class BuildChecks {
  readonly settings: CheckSettings;
  private readonly rules = new Set<string>();
  readonly findings: CheckFinding[] = [];

  constructor(
    private readonly df: ParsedDockerfile,
    private readonly emit?: (e: CheckEvent) => void,
  ) {
    this.settings = checkSettings(df.check);
  }

  /** Whether any rule can report: false with `skip=all`, and callers skip the work. */
  get enabled(): boolean {
    return !this.settings.skipAll;
  }

  report(findings: Iterable<CheckFinding | undefined>): void {
    if (this.settings.skipAll) return;
    for (const f of findings) {
      if (!f || this.settings.skip.has(f.rule)) continue;
      this.findings.push(f);
      this.rules.add(f.rule);
      this.emit?.({ type: 'check', ...f, error: this.settings.error });
    }
  }

  failIfFound(): void {
    if (!this.settings.error || this.rules.size === 0) return;
    throw new FailedPreconditionError(`lint violation found for rules: ${[...this.rules].join(', ')} (# check=error=true in ${this.df.file})`);
  }
}
