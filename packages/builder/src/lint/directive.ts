/**
 * The `# check=skip=RULE1,RULE2;error=true` parser directive, as BuildKit reads it
 * (frontend/dockerfile/linter ParseLintOptions): `skip=all` silences every rule, `error=true`
 * makes any finding fail the build once the checks have run. parseDockerfile already refused a
 * directive of another shape, so this only reads it.
 */
export interface CheckSettings {
  skip: ReadonlySet<string>;
  skipAll: boolean;
  error: boolean;
}

export function checkSettings(directive: string | undefined): CheckSettings {
  const skip = new Set<string>();
  let skipAll = false;
  let error = false;
  for (const part of (directive ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (key === 'skip') {
      if (value.toLowerCase() === 'all') skipAll = true;
      else for (const r of value.split(',')) if (r.trim() !== '') skip.add(r.trim());
    } else if (key === 'error') {
      error = value.toLowerCase() === 'true';
    }
  }
  return { skip, skipAll, error };
}
