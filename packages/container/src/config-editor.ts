import { type ContainerConfig, type HistoryEntry, type ImageConfig, InvalidArgumentError, isoTime } from '@tsbuild/oci';

/**
 * `buildah config`: edits of a working container's image configuration, one field per flag, done
 * in the order buildah's updateConfig (cmd/buildah/config.go) does them, with its spellings:
 *   KEY=VALUE sets, `KEY-` removes one, a lone `-` removes all (env, label, annotation, port, volume);
 *   a lone `KEY` takes the host's value (env) or sets an empty one (label, annotation).
 * Fields OCI's config has no member for (Healthcheck, OnBuild, Shell, Domainname, Hostname, the
 * top-level comment) are kept where docker's image format keeps them, as buildah does for
 * `--format docker`. Annotations belong to the manifest, not the config: `editConfig` returns them
 * apart. The values are strings as the command line gives them; a bad one (a duration, a count,
 * a port) is an InvalidArgumentError naming the flag.
 */
export interface ConfigChanges {
  /** --env: KEY=VALUE ($VAR and ${VAR} expanded from the config's env), KEY-, -, or KEY (host's value). */
  env?: string[];
  /** --cmd: a JSON array, else split into words as a shell would (no shell); '' clears. */
  cmd?: string;
  /** --entrypoint: a JSON array, else ['/bin/sh', '-c', VALUE]; '' clears. */
  entrypoint?: string;
  /** --label: KEY=VALUE, KEY (empty value), KEY-, -. */
  label?: string[];
  /** --unsetlabel */
  unsetLabel?: string[];
  /** --annotation (manifest annotations): KEY=VALUE, KEY (empty value), KEY-, -. */
  annotation?: string[];
  /** --unsetannotation */
  unsetAnnotation?: string[];
  workingDir?: string;
  user?: string;
  /** --port: PORT[/PROTO] or a range, PORT-, or a value starting with '-' (clears all). */
  port?: string[];
  /** --volume: PATH, PATH-, -. */
  volume?: string[];
  author?: string;
  /** --created-by: the history entry of the next commit (CommitInfo), not the config. */
  createdBy?: string;
  /** --comment: docker's image-level comment. */
  comment?: string;
  /** --history-comment: the history entry of the next commit (CommitInfo). */
  historyComment?: string;
  /** --healthcheck: `CMD …`, `CMD-SHELL …` or `NONE`, split into words; '' removes the healthcheck. */
  healthcheck?: string;
  /** Go durations (30s, 1m30s, 500ms). */
  healthcheckInterval?: string;
  healthcheckTimeout?: string;
  healthcheckStartPeriod?: string;
  healthcheckStartInterval?: string;
  healthcheckRetries?: string | number;
  /** --shell: split into words. */
  shell?: string;
  stopSignal?: string;
  /** --onbuild: appended, one trigger each. */
  onbuild?: string[];
  arch?: string;
  os?: string;
  variant?: string;
  osVersion?: string;
  /** --os-feature: FEATURE, FEATURE-, -. */
  osFeature?: string[];
  domainname?: string;
  hostname?: string;
  /** --add-history: an empty-layer history entry for each instruction-like change, as buildah's. */
  addHistory?: boolean;
}

/** docker's container config: OCI's plus the fields only docker's image format has. */
export type DockerContainerConfig = ContainerConfig & { Domainname?: string; Hostname?: string };

/** The config with docker's image-level comment, which `--comment` sets. */
export type EditedImageConfig = ImageConfig & { comment?: string; config?: DockerContainerConfig };

/** What the next commit writes into its own history entry (buildah keeps these on the builder). */
export interface CommitInfo {
  createdBy?: string;
  historyComment?: string;
}

export interface ConfigEdit {
  config: EditedImageConfig;
  /** The manifest annotations after the edit. */
  annotations: Record<string, string>;
  /** Only the fields the changes named. */
  commit: CommitInfo;
  /** What buildah logs as a warning (a CMD an ENTRYPOINT ignores, a variable not set); never fatal. */
  warnings: string[];
}

/** docker's defaults for a healthcheck that had none (buildah's updateHealthcheck). */
const HEALTHCHECK_DEFAULTS = { Test: ['NONE'], Interval: 30e9, StartPeriod: 0, Timeout: 30e9, Retries: 3 };

/** Applies `changes` to a copy of `config`; the argument is left as it was. */
export function applyConfig(config: ImageConfig, changes: ConfigChanges, now?: string, hostEnv?: Readonly<Record<string, string | undefined>>): EditedImageConfig {
  return editConfig(config, {}, changes, now, hostEnv).config;
}

/**
 * Applies `changes` to copies of a working container's config and manifest annotations. `now`
 * dates the --add-history entries; `hostEnv` is where a lone `--env KEY` finds its value.
 */
export function editConfig(
  config: ImageConfig,
  annotations: Readonly<Record<string, string>>,
  changes: ConfigChanges,
  now: string = isoTime(),
  hostEnv: Readonly<Record<string, string | undefined>> = process.env,
): ConfigEdit {
  const out = structuredClone(config) as EditedImageConfig;
  const c: DockerContainerConfig = (out.config ??= {});
  let notes: Record<string, string> = { ...annotations };
  const commit: CommitInfo = {};
  const warnings: string[] = [];
  const history = (createdBy: string) => {
    if (changes.addHistory) (out.history ??= []).push({ created: now, created_by: `/bin/sh -c #(nop) ${createdBy}`, empty_layer: true } satisfies HistoryEntry);
  };

  if (changes.author !== undefined) out.author = changes.author;
  if (changes.createdBy !== undefined) commit.createdBy = changes.createdBy;
  if (changes.arch !== undefined) out.architecture = changes.arch;
  if (changes.variant !== undefined) setOrDelete(out, 'variant', changes.variant);
  if (changes.os !== undefined) out.os = changes.os;
  for (const f of changes.osFeature ?? []) {
    if (f === '-') delete out['os.features'];
    else if (f.endsWith('-')) out['os.features'] = (out['os.features'] ?? []).filter((x) => x !== f.slice(0, -1));
    else if (!(out['os.features'] ?? []).includes(f)) out['os.features'] = [...(out['os.features'] ?? []), f];
  }
  if (changes.osVersion !== undefined) setOrDelete(out, 'os.version', changes.osVersion);
  if (changes.user !== undefined) {
    c.User = changes.user;
    history(`USER ${changes.user}`);
  }
  if (changes.shell !== undefined) {
    c.Shell = shellWords('shell', changes.shell);
    history(`SHELL ${changes.shell}`);
  }
  if (changes.stopSignal !== undefined) {
    c.StopSignal = changes.stopSignal;
    history(`STOPSIGNAL ${changes.stopSignal}`);
  }
  if (changes.port !== undefined) {
    for (const p of changes.port) {
      // buildah tests the first character: any value starting with '-' clears every port.
      if (p.startsWith('-')) c.ExposedPorts = {};
      else if (p.endsWith('-')) delete c.ExposedPorts?.[p.slice(0, -1)];
      else (c.ExposedPorts ??= {})[checkPort(p)] = {};
    }
    history(`EXPOSE ${changes.port.join(' ')}`);
  }
  if (changes.env !== undefined) {
    for (const spec of changes.env) {
      const eq = spec.indexOf('=');
      if (eq >= 0) {
        const k = spec.slice(0, eq);
        setEnv(c, k, expand(spec.slice(eq + 1), c.Env ?? [], (name) => warnings.push(`--env ${spec}: no value set for $${name} in the configuration`)));
      } else if (spec === '-') c.Env = [];
      else if (spec.endsWith('-')) unsetEnv(c, spec.slice(0, -1));
      else {
        // A lone KEY takes the host's value, not expanded; an unset or empty one is an error.
        const v = hostEnv[spec];
        if (v === undefined || v === '') throw new InvalidArgumentError(`--env ${spec}: no value given, and ${spec} is not set in the environment`);
        setEnv(c, spec, v);
      }
    }
    history(`ENV ${changes.env.join(' ')}`);
  }
  if (changes.entrypoint !== undefined) {
    c.Entrypoint = entrypoint(changes.entrypoint, c.Cmd ?? [], warnings);
    history(`ENTRYPOINT ${changes.entrypoint}`);
  }
  // After the entrypoint, as buildah: CMD is the entrypoint's arguments.
  if (changes.cmd !== undefined) {
    c.Cmd = changes.cmd.trim() === '' ? null : (jsonArray(changes.cmd) ?? shellWords('cmd', changes.cmd));
    history(`CMD ${changes.cmd}`);
  }
  for (const v of changes.volume ?? []) {
    if (v === '-') c.Volumes = {};
    else if (v.endsWith('-')) delete c.Volumes?.[v.slice(0, -1)];
    else (c.Volumes ??= {})[v] = {};
    history(`VOLUME ${v}`);
  }
  healthcheck(c, changes, history);
  if (changes.label !== undefined) {
    for (const spec of changes.label) {
      const eq = spec.indexOf('=');
      if (eq >= 0) (c.Labels ??= {})[spec.slice(0, eq)] = spec.slice(eq + 1);
      else if (spec === '-') c.Labels = {};
      else if (spec.endsWith('-')) delete c.Labels?.[spec.slice(0, -1)];
      else (c.Labels ??= {})[spec] = '';
    }
    history(`LABEL ${changes.label.join(' ')}`);
  }
  for (const k of changes.unsetLabel ?? []) delete c.Labels?.[k];
  for (const k of changes.unsetAnnotation ?? []) delete notes[k];
  if (changes.workingDir !== undefined) {
    c.WorkingDir = changes.workingDir;
    history(`WORKDIR ${changes.workingDir}`);
  }
  if (changes.comment !== undefined) setOrDelete(out, 'comment', changes.comment);
  if (changes.historyComment !== undefined) commit.historyComment = changes.historyComment;
  if (changes.domainname !== undefined) setOrDelete(c, 'Domainname', changes.domainname);
  if (changes.hostname !== undefined) setOrDelete(c, 'Hostname', changes.hostname);
  for (const trigger of changes.onbuild ?? []) {
    c.OnBuild = [...(c.OnBuild ?? []), trigger];
    history(`ONBUILD ${trigger}`);
  }
  for (const spec of changes.annotation ?? []) {
    const eq = spec.indexOf('=');
    if (eq >= 0) notes[spec.slice(0, eq)] = spec.slice(eq + 1);
    else if (spec === '-') notes = {};
    else if (spec.endsWith('-')) delete notes[spec.slice(0, -1)];
    else notes[spec] = '';
  }
  return { config: out, annotations: notes, commit, warnings };
}

function setOrDelete<T extends object, K extends keyof T>(o: T, k: K, v: string): void {
  if (v === '') delete o[k];
  else o[k] = v as T[K];
}

/** buildah's SetEnv: every KEY= entry goes, and KEY=VALUE is appended at the end. */
function setEnv(c: ContainerConfig, k: string, v: string): void {
  c.Env = [...(c.Env ?? []).filter((e) => !e.startsWith(`${k}=`)), `${k}=${v}`];
}

function unsetEnv(c: ContainerConfig, k: string): void {
  c.Env = (c.Env ?? []).filter((e) => !e.startsWith(`${k}=`));
}

/**
 * Go's os.Expand as buildah calls it on an --env value: $NAME and ${NAME} from the config's env.
 * A variable not set there becomes its own name (buildah logs an error and goes on).
 */
function expand(value: string, env: readonly string[], missing: (name: string) => void): string {
  const lookup = (name: string) => {
    const hit = env.find((e) => e.startsWith(`${name}=`));
    if (hit !== undefined) return hit.slice(name.length + 1);
    missing(name);
    return name;
  };
  return value.replace(/\$(?:\{([^}]*)\}|([A-Za-z0-9_]+|[*#$@!?\-]|[0-9]))/g, (_m, braced: string | undefined, bare: string | undefined) => lookup(braced ?? bare!));
}

/** A JSON array of strings, or undefined when the text is not one. */
function jsonArray(text: string): string[] | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v;
    // Go's json.Unmarshal into []string takes null as an empty (nil) slice.
    if (v === null) return [];
  } catch {
    // not JSON
  }
  return undefined;
}

function entrypoint(value: string, cmd: readonly string[], warnings: string[]): string[] | null {
  if (value.trim() === '') return null;
  const json = jsonArray(value);
  if (json !== undefined) {
    if (cmd.length > 0) warnings.push(`cmd "${cmd.join(' ')}" exists and will be passed to entrypoint as a parameter`);
    return json;
  }
  // The shell form: the exec of /bin/sh -c ignores any CMD.
  if (cmd.length > 0) warnings.push(`cmd "${cmd.join(' ')}" exists but will be ignored because of entrypoint settings`);
  return ['/bin/sh', '-c', value];
}

/**
 * Words as go-shellwords (which buildah uses for --cmd, --shell, --healthcheck) splits them:
 * blanks separate, '…' is literal, "…" keeps blanks and takes \" \\ \$ \` escapes, \x outside
 * quotes is x. No variables, globs or operators are interpreted.
 */
export function shellWords(flag: string, text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\') {
      if (i + 1 >= text.length) break;
      word += text[++i];
      inWord = true;
    } else if (ch === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new InvalidArgumentError(`--${flag} ${text}: unclosed single quote`);
      word += text.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (ch === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && j + 1 < text.length && '"\\$`'.includes(text[j + 1]!)) j++;
        word += text[j];
      }
      if (j >= text.length) throw new InvalidArgumentError(`--${flag} ${text}: unclosed double quote`);
      i = j;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * A port as EXPOSE and the image spec's ExposedPorts take it: PORT or PORT-PORT, then /tcp, /udp or
 * /sctp. buildah stores whatever it is given; a value the spec does not allow is refused here
 * rather than written into an image that docker and podman would then reject.
 */
function checkPort(p: string): string {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
  const ok = (s: string | undefined) => s === undefined || (Number(s) >= 1 && Number(s) <= 65535);
  if (!m || !ok(m[1]) || !ok(m[2]) || (m[2] !== undefined && Number(m[2]) < Number(m[1])))
    throw new InvalidArgumentError(`--port ${p}: want PORT[/tcp|udp|sctp] with PORT in 1-65535 (or a range such as 8000-8010)`);
  return p;
}

const DURATION_UNITS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * Go's time.ParseDuration, in nanoseconds (undefined: not a duration): the one parser of the
 * healthcheck times, buildah's `config --healthcheck-*` and the Dockerfile's HEALTHCHECK flags
 * alike (BuildKit parses those with time.ParseDuration too).
 */
export function goDuration(text: string): number | undefined {
  const m = /^([-+]?)(.*)$/.exec(text)!;
  if (m[2] === '0') return 0;
  if (m[2] === '') return undefined;
  let total = 0;
  // µ and μ as escapes: the bundles are ASCII (load-command.cjs reads them as latin1).
  const re = /(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/gy;
  let end = 0;
  for (let hit = re.exec(m[2]!); hit !== null; hit = re.exec(m[2]!)) {
    total += Number(hit[1]) * DURATION_UNITS[hit[2]!]!;
    end = re.lastIndex;
  }
  if (end !== m[2]!.length) return undefined;
  return Math.round(m[1] === '-' ? -total : total);
}

/** A `--healthcheck-*` flag's duration (goDuration), or its one-line error. */
export function parseGoDuration(flag: string, text: string): number {
  const ns = goDuration(text);
  if (ns === undefined) throw new InvalidArgumentError(`--${flag} ${text}: want a duration such as 30s, 1m30s or 500ms`);
  return ns;
}

function healthcheck(c: DockerContainerConfig, ch: ConfigChanges, history: (createdBy: string) => void): void {
  const given = [ch.healthcheck, ch.healthcheckInterval, ch.healthcheckTimeout, ch.healthcheckStartPeriod, ch.healthcheckStartInterval, ch.healthcheckRetries];
  if (given.every((v) => v === undefined)) return;
  const hc: NonNullable<ContainerConfig['Healthcheck']> = structuredClone(c.Healthcheck ?? HEALTHCHECK_DEFAULTS);
  let args = '';
  if (ch.healthcheck !== undefined) hc.Test = shellWords('healthcheck', ch.healthcheck);
  if (ch.healthcheckInterval !== undefined) {
    hc.Interval = parseGoDuration('healthcheck-interval', ch.healthcheckInterval);
    args += `--interval=${ch.healthcheckInterval} `;
  }
  if (ch.healthcheckRetries !== undefined) {
    const r = String(ch.healthcheckRetries);
    if (!/^[-+]?\d+$/.test(r.trim())) throw new InvalidArgumentError(`--healthcheck-retries ${r}: want a whole number`);
    hc.Retries = Number(r);
    args += `--retries=${hc.Retries} `;
  }
  if (ch.healthcheckStartPeriod !== undefined) {
    hc.StartPeriod = parseGoDuration('healthcheck-start-period', ch.healthcheckStartPeriod);
    args += `--start-period=${ch.healthcheckStartPeriod} `;
  }
  if (ch.healthcheckStartInterval !== undefined) {
    hc.StartInterval = parseGoDuration('healthcheck-start-interval', ch.healthcheckStartInterval);
    args += `--start-interval=${ch.healthcheckStartInterval} `;
  }
  if (ch.healthcheckTimeout !== undefined) {
    hc.Timeout = parseGoDuration('healthcheck-timeout', ch.healthcheckTimeout);
    args += `--timeout=${ch.healthcheckTimeout} `;
  }
  if ((hc.Test ?? []).length === 0) {
    delete c.Healthcheck;
    history('HEALTHCHECK NONE');
  } else {
    c.Healthcheck = hc;
    history(`HEALTHCHECK ${args}${ch.healthcheck ?? ''}`);
  }
}

/**
 * pflag's StringSlice, which buildah uses for --port, --volume, --onbuild, --unsetlabel and
 * --unsetannotation: each value is a line of CSV, so `--port 80,443` is two ports.
 */
export function splitCsv(values: readonly string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  const out: string[] = [];
  for (const v of values) {
    if (v === '') continue;
    let field = '';
    let quoted = false;
    for (let i = 0; i < v.length; i++) {
      const ch = v[i]!;
      if (quoted) {
        if (ch === '"' && v[i + 1] === '"') field += v[++i];
        else if (ch === '"') quoted = false;
        else field += ch;
      } else if (ch === '"' && field === '') quoted = true;
      else if (ch === ',') {
        out.push(field);
        field = '';
      } else field += ch;
    }
    out.push(field);
  }
  return out;
}

/** The command line's values by buildah's flag names, as a parser gives them. */
export type ConfigFlagValues = Readonly<Record<string, string | number | boolean | readonly string[] | undefined>>;

/**
 * `buildah config` flags (by buildah's names: --env, --unsetlabel, --healthcheck-retries …) to
 * ConfigChanges. The flags pflag parses as StringSlice are split at commas here; the others
 * (--env, --label, --annotation, --os-feature: StringArray) are taken whole.
 */
export function configChangesFromFlags(f: ConfigFlagValues): ConfigChanges {
  const str = (k: string): string | undefined => (f[k] === undefined ? undefined : String(f[k]));
  const arr = (k: string): string[] | undefined => {
    const v = f[k];
    if (v === undefined) return undefined;
    return Array.isArray(v) ? [...(v as readonly string[])] : [String(v)];
  };
  const changes: ConfigChanges = {
    env: arr('env'),
    cmd: str('cmd'),
    entrypoint: str('entrypoint'),
    label: arr('label'),
    unsetLabel: splitCsv(arr('unsetlabel')),
    annotation: arr('annotation'),
    unsetAnnotation: splitCsv(arr('unsetannotation')),
    workingDir: str('workingdir'),
    user: str('user'),
    port: splitCsv(arr('port')),
    volume: splitCsv(arr('volume')),
    author: str('author'),
    createdBy: str('created-by'),
    comment: str('comment'),
    historyComment: str('history-comment'),
    healthcheck: str('healthcheck'),
    healthcheckInterval: str('healthcheck-interval'),
    healthcheckTimeout: str('healthcheck-timeout'),
    healthcheckStartPeriod: str('healthcheck-start-period'),
    healthcheckStartInterval: str('healthcheck-start-interval'),
    healthcheckRetries: str('healthcheck-retries'),
    shell: str('shell'),
    stopSignal: str('stop-signal'),
    onbuild: splitCsv(arr('onbuild')),
    arch: str('arch'),
    os: str('os'),
    variant: str('variant'),
    osVersion: str('os-version'),
    osFeature: arr('os-feature'),
    domainname: str('domainname'),
    hostname: str('hostname'),
    addHistory: f['add-history'] === undefined ? undefined : f['add-history'] === true || f['add-history'] === 'true',
  };
  return Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)) as ConfigChanges;
}
