import { type ImageConfig, InvalidArgumentError } from '@tsbuild/oci';
import { describe, expect, it } from 'vitest';
import { applyConfig, configChangesFromFlags, editConfig, parseGoDuration, shellWords } from './config-editor.js';

// Each test names the buildah behaviour it pins (cmd/buildah/config.go updateConfig and the
// Builder setters in config.go, containers/buildah main branch).

const base = (): ImageConfig => ({
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/usr/bin', 'A=1', 'B=2'], Cmd: ['sh'], Labels: { keep: 'yes', drop: 'x' }, ExposedPorts: { '80/tcp': {} }, Volumes: { '/data': {} } },
  rootfs: { type: 'layers', diff_ids: [] },
});

describe('applyConfig: --env', () => {
  it('KEY=VALUE replaces and moves the variable to the end (SetEnv drops KEY= entries, appends)', () => {
    expect(applyConfig(base(), { env: ['A=3'] }).config!.Env).toEqual(['PATH=/usr/bin', 'B=2', 'A=3']);
  });

  it('expands $VAR and ${VAR} from the config env; an unset one becomes its own name with a warning (os.Expand getenv)', () => {
    const r = editConfig(base(), {}, { env: ['PATH=$PATH:/x', 'C=${B}y', 'D=$NOPE'] });
    expect(r.config.config!.Env).toEqual(['A=1', 'B=2', 'PATH=/usr/bin:/x', 'C=2y', 'D=NOPE']);
    expect(r.warnings).toEqual(['--env D=$NOPE: no value set for $NOPE in the configuration']);
  });

  it('KEY- unsets, - clears all (UnsetEnv, ClearEnv)', () => {
    expect(applyConfig(base(), { env: ['A-'] }).config!.Env).toEqual(['PATH=/usr/bin', 'B=2']);
    expect(applyConfig(base(), { env: ['-', 'Z=1'] }).config!.Env).toEqual(['Z=1']);
  });

  it('a lone KEY takes the host value unexpanded; unset or empty is an error ("no value given")', () => {
    expect(applyConfig(base(), { env: ['HOSTV'] }, undefined, { HOSTV: '$A' }).config!.Env).toContain('HOSTV=$A');
    expect(() => applyConfig(base(), { env: ['HOSTV'] }, undefined, {})).toThrow(InvalidArgumentError);
    expect(() => applyConfig(base(), { env: ['HOSTV'] }, undefined, { HOSTV: '' })).toThrow(/^--env HOSTV: no value given/);
  });

  it('leaves its argument unchanged (returns a new object)', () => {
    const c = base();
    const before = structuredClone(c);
    applyConfig(c, { env: ['-'], label: ['-'], port: ['-'], cmd: '' });
    expect(c).toEqual(before);
  });
});

describe('applyConfig: --cmd and --entrypoint', () => {
  it('--entrypoint takes a JSON array as it is; other text becomes /bin/sh -c TEXT (updateEntrypoint)', () => {
    expect(applyConfig(base(), { entrypoint: '["/app","--x"]' }).config!.Entrypoint).toEqual(['/app', '--x']);
    expect(applyConfig(base(), { entrypoint: 'exec /app "a b"' }).config!.Entrypoint).toEqual(['/bin/sh', '-c', 'exec /app "a b"']);
  });

  it('an empty or blank --entrypoint / --cmd clears it (SetEntrypoint(nil), SetCmd(nil))', () => {
    const r = applyConfig({ ...base(), config: { Entrypoint: ['/e'], Cmd: ['c'] } }, { entrypoint: ' ', cmd: '' });
    expect(r.config!.Entrypoint).toBeNull();
    expect(r.config!.Cmd).toBeNull();
  });

  it('--cmd takes a JSON array, else shell-like words without a shell (updateCmd: shellwords.Parse)', () => {
    expect(applyConfig(base(), { cmd: '["a b","c"]' }).config!.Cmd).toEqual(['a b', 'c']);
    expect(applyConfig(base(), { cmd: `echo "hello world" 'x y' a\\ b` }).config!.Cmd).toEqual(['echo', 'hello world', 'x y', 'a b']);
    expect(() => applyConfig(base(), { cmd: 'echo "open' })).toThrow(/^--cmd echo "open: unclosed double quote$/);
  });

  it('cmd is applied after entrypoint, and buildah warns about a CMD the entrypoint gets or ignores', () => {
    expect(editConfig(base(), {}, { entrypoint: 'run' }).warnings).toEqual(['cmd "sh" exists but will be ignored because of entrypoint settings']);
    expect(editConfig(base(), {}, { entrypoint: '["/e"]' }).warnings).toEqual(['cmd "sh" exists and will be passed to entrypoint as a parameter']);
    const r = applyConfig(base(), { entrypoint: '["/e"]', cmd: 'x' });
    expect([r.config!.Entrypoint, r.config!.Cmd]).toEqual([['/e'], ['x']]);
  });
});

describe('applyConfig: labels, annotations, ports, volumes', () => {
  it('--label KEY=V sets, KEY sets empty, KEY- and --unsetlabel remove, - clears (SetLabel/UnsetLabel/ClearLabels)', () => {
    expect(applyConfig(base(), { label: ['a=b=c', 'empty', 'drop-'] }).config!.Labels).toEqual({ keep: 'yes', a: 'b=c', empty: '' });
    expect(applyConfig(base(), { unsetLabel: ['keep'] }).config!.Labels).toEqual({ drop: 'x' });
    expect(applyConfig(base(), { label: ['-', 'n=1'] }).config!.Labels).toEqual({ n: '1' });
  });

  it('--annotation edits the manifest annotations, returned apart from the config; applied after --unsetannotation', () => {
    const r = editConfig(base(), { old: '1', gone: '2' }, { annotation: ['a=1', 'b', 'gone-'], unsetAnnotation: ['old'] });
    expect(r.annotations).toEqual({ a: '1', b: '' });
    expect(JSON.stringify(r.config)).not.toContain('"a"');
    expect(editConfig(base(), { x: '1' }, { annotation: ['-'] }).annotations).toEqual({});
  });

  it('--port adds as given, PORT- removes, a value starting with - clears; a bad port is an error naming --port', () => {
    expect(applyConfig(base(), { port: ['8080', '53/udp', '8000-8010/tcp', '80/tcp-'] }).config!.ExposedPorts).toEqual({ '8080': {}, '53/udp': {}, '8000-8010/tcp': {} });
    expect(applyConfig(base(), { port: ['-'] }).config!.ExposedPorts).toEqual({});
    for (const bad of ['http', '0', '70000', '80/icmp', '90-80']) expect(() => applyConfig(base(), { port: [bad] })).toThrow(new RegExp(`^--port ${bad}: `));
  });

  it('--volume adds, PATH- removes, - clears (AddVolume/RemoveVolume/ClearVolumes)', () => {
    expect(applyConfig(base(), { volume: ['/v', '/data-'] }).config!.Volumes).toEqual({ '/v': {} });
    expect(applyConfig(base(), { volume: ['-'] }).config!.Volumes).toEqual({});
  });
});

describe('applyConfig: healthcheck', () => {
  it('starts from docker defaults (NONE, 30s, 30s, 3 retries) and splits the command into words', () => {
    expect(applyConfig(base(), { healthcheck: 'CMD curl -f http://localhost/', healthcheckInterval: '1m30s', healthcheckRetries: '5' }).config!.Healthcheck).toEqual({
      Test: ['CMD', 'curl', '-f', 'http://localhost/'],
      Interval: 90e9,
      StartPeriod: 0,
      Timeout: 30e9,
      Retries: 5,
    });
  });

  it('a timing flag alone edits the existing healthcheck; an empty --healthcheck removes it', () => {
    const withHc = applyConfig(base(), { healthcheck: 'CMD-SHELL true' });
    expect(applyConfig(withHc, { healthcheckTimeout: '500ms', healthcheckStartPeriod: '2s' }).config!.Healthcheck).toMatchObject({ Test: ['CMD-SHELL', 'true'], Timeout: 5e8, StartPeriod: 2e9 });
    expect(applyConfig(withHc, { healthcheck: '' }).config!.Healthcheck).toBeUndefined();
    expect(applyConfig(base(), { healthcheck: 'NONE' }).config!.Healthcheck!.Test).toEqual(['NONE']);
  });

  it('bad durations and retries are errors naming the flag (time.ParseDuration, pflag IntVar)', () => {
    expect(() => applyConfig(base(), { healthcheckInterval: '30' })).toThrow(/^--healthcheck-interval 30: want a duration/);
    expect(() => applyConfig(base(), { healthcheckTimeout: '1x' })).toThrow(/^--healthcheck-timeout 1x: /);
    expect(() => applyConfig(base(), { healthcheckRetries: 'three' })).toThrow(/^--healthcheck-retries three: want a whole number$/);
  });

  it('parses Go durations: units ns..h, fractions, combinations, bare 0', () => {
    expect(parseGoDuration('x', '1h2m3.5s')).toBe(3723.5e9);
    expect(parseGoDuration('x', '0')).toBe(0);
    expect(parseGoDuration('x', '.5ms')).toBe(5e5);
    expect(() => parseGoDuration('x', '')).toThrow(InvalidArgumentError);
  });
});

describe('applyConfig: the other setters', () => {
  it('sets user, workingdir, stop signal, author, arch/os/variant and docker-only fields where docker keeps them', () => {
    const r = editConfig(base(), {}, {
      user: '1000:1000', workingDir: '/w', stopSignal: 'SIGINT', author: 'me', arch: 'arm64', os: 'linux', variant: 'v8',
      shell: '/bin/bash -o pipefail -c', onbuild: ['RUN a', 'COPY b c'], domainname: 'example.org', hostname: 'box', comment: 'hi',
      createdBy: 'by hand', historyComment: 'why',
    });
    const c = r.config;
    expect([c.config!.User, c.config!.WorkingDir, c.config!.StopSignal, c.author, c.architecture, c.variant]).toEqual(['1000:1000', '/w', 'SIGINT', 'me', 'arm64', 'v8']);
    expect(c.config!.Shell).toEqual(['/bin/bash', '-o', 'pipefail', '-c']);
    expect(c.config!.OnBuild).toEqual(['RUN a', 'COPY b c']);
    expect([c.config!.Domainname, c.config!.Hostname, c.comment]).toEqual(['example.org', 'box', 'hi']);
    // --created-by and --history-comment describe the next commit's layer, not the config.
    expect(r.commit).toEqual({ createdBy: 'by hand', historyComment: 'why' });
  });

  it('--onbuild appends to the existing triggers (SetOnBuild appends)', () => {
    expect(applyConfig({ ...base(), config: { OnBuild: ['RUN x'] } }, { onbuild: ['RUN y'] }).config!.OnBuild).toEqual(['RUN x', 'RUN y']);
  });

  it('--add-history adds an empty-layer entry per change, dated now (conditionallyAddHistory)', () => {
    const r = applyConfig(base(), { addHistory: true, env: ['X=1'], workingDir: '/w' }, '2024-01-02T03:04:05Z');
    expect(r.history).toEqual([
      { created: '2024-01-02T03:04:05Z', created_by: '/bin/sh -c #(nop) ENV X=1', empty_layer: true },
      { created: '2024-01-02T03:04:05Z', created_by: '/bin/sh -c #(nop) WORKDIR /w', empty_layer: true },
    ]);
    expect(applyConfig(base(), { env: ['X=1'] }).history).toBeUndefined();
  });
});

describe('configChangesFromFlags and shellWords', () => {
  it('splits the StringSlice flags at commas (pflag CSV) and keeps StringArray ones whole', () => {
    expect(configChangesFromFlags({ port: ['80,443/tcp'], volume: ['/a,/b'], env: ['A=1,2'], label: ['l=a,b'], 'healthcheck-retries': '4', 'add-history': false })).toEqual({
      port: ['80', '443/tcp'], volume: ['/a', '/b'], env: ['A=1,2'], label: ['l=a,b'], healthcheckRetries: '4', addHistory: false,
    });
    expect(configChangesFromFlags({ onbuild: ['"RUN a,b",RUN c'] }).onbuild).toEqual(['RUN a,b', 'RUN c']);
  });

  it('shellWords handles quotes and escapes as go-shellwords, and refuses unclosed quotes', () => {
    expect(shellWords('x', `  a  "b \\"c\\" d" 'e\\f' g\\ h ""`)).toEqual(['a', 'b "c" d', 'e\\f', 'g h', '']);
    expect(() => shellWords('shell', "'x")).toThrow(/^--shell 'x: unclosed single quote$/);
  });
});
