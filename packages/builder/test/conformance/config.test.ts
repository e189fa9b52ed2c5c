import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Built, type Harness, openHarness } from './harness.js';

/** Every config field and the history entries, from one Dockerfile built on busybox. */
let h: Harness;
let r: Built;
let shell: Built;
let entry: Built;

beforeAll(async () => {
  h = await openHarness('config');
  r = await h.buildIt(
    {
      Dockerfile: [
        'FROM busybox',
        'ARG HTTP_PROXY',
        'ARG VERSION=1.0',
        'ENV A=1 B="two words"',
        'LABEL org.example.version=$VERSION "quoted key"=yes',
        'LABEL multi=a \\',
        '      multi2=b',
        'EXPOSE 80 443/tcp 53/UDP 8080-8081',
        'VOLUME /data',
        'VOLUME ["/json-vol"]',
        'VOLUME /a /b',
        'USER 1000:1000',
        'WORKDIR /srv/app',
        'WORKDIR sub',
        'STOPSIGNAL SIGTERM',
        'HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=4 CMD wget -q localhost || exit 1',
        'ONBUILD RUN echo child',
        'ONBUILD COPY . /app',
        'ENTRYPOINT ["/bin/entry", "arg"]',
        'CMD ["default"]',
        'MAINTAINER someone@example.com',
        'SHELL ["/bin/sh", "-ec"]',
        'USER root',
        'RUN echo "$HTTP_PROXY" > /proxy-seen',
        'USER 1000:1000',
        '',
      ].join('\n'),
    },
    { buildArgs: { HTTP_PROXY: 'http://proxy.invalid:3128' } },
  );
  shell = await h.buildIt({ Dockerfile: 'FROM busybox\nSHELL ["/bin/sh", "-xc"]\nCMD echo hi\nENTRYPOINT echo ep\nHEALTHCHECK CMD true\n' });
  entry = await h.buildIt({ Dockerfile: `FROM busybox AS base\nCMD ["base"]\nFROM base\nENTRYPOINT ["/e"]\nHEALTHCHECK NONE\n` });
});
afterAll(() => h.close());

const c = () => r.config.config!;
const hist = () => r.config.history!;

describe('config fields', () => {
  it.each<[string, () => unknown, unknown]>([
    ['Env: the default PATH (the base has none) first, then what ENV set', () => c().Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1', 'B=two words']],
    ['Env has A', () => c().Env!.includes('A=1'), true],
    ['Env has B with spaces', () => c().Env!.includes('B=two words'), true],
    ['ARG not in Env', () => c().Env!.some((e) => e.startsWith('VERSION=')), false],
    ['proxy ARG not in Env', () => c().Env!.some((e) => e.startsWith('HTTP_PROXY=')), false],
    ['Labels from ARG', () => c().Labels!['org.example.version'], '1.0'],
    ['quoted label key', () => c().Labels!['quoted key'], 'yes'],
    ['label across a continuation', () => c().Labels!.multi2, 'b'],
    ['label before a continuation', () => c().Labels!.multi, 'a'],
    ['ExposedPorts default tcp', () => '80/tcp' in c().ExposedPorts!, true],
    ['ExposedPorts explicit tcp', () => '443/tcp' in c().ExposedPorts!, true],
    ['ExposedPorts protocol lower-cased', () => '53/udp' in c().ExposedPorts!, true],
    ['ExposedPorts range kept', () => '8080-8081/tcp' in c().ExposedPorts!, true],
    ['Volumes shell form', () => '/data' in c().Volumes!, true],
    ['Volumes JSON form', () => '/json-vol' in c().Volumes!, true],
    ['Volumes several', () => Object.keys(c().Volumes!).includes('/a') && Object.keys(c().Volumes!).includes('/b'), true],
    ['User is the last USER', () => c().User, '1000:1000'],
    ['WorkingDir relative to the previous', () => c().WorkingDir, '/srv/app/sub'],
    ['StopSignal', () => c().StopSignal, 'SIGTERM'],
    ['Healthcheck Test shell form', () => c().Healthcheck!.Test, ['CMD-SHELL', 'wget -q localhost || exit 1']],
    ['Healthcheck Interval ns', () => c().Healthcheck!.Interval, 30e9],
    ['Healthcheck Timeout ns', () => c().Healthcheck!.Timeout, 5e9],
    ['Healthcheck StartPeriod ns', () => c().Healthcheck!.StartPeriod, 60e9],
    ['Healthcheck StartInterval ns', () => c().Healthcheck!.StartInterval, 2e9],
    ['Healthcheck Retries', () => c().Healthcheck!.Retries, 4],
    ['OnBuild triggers in order', () => c().OnBuild, ['RUN echo child', 'COPY . /app']],
    ['Entrypoint exec form', () => c().Entrypoint, ['/bin/entry', 'arg']],
    ['Cmd after Entrypoint stays', () => c().Cmd, ['default']],
    ['Shell', () => c().Shell, ['/bin/sh', '-ec']],
    ['author from MAINTAINER', () => r.config.author, 'someone@example.com'],
    ['architecture and os set', () => [r.config.os, typeof r.config.architecture], ['linux', 'string']],
    ['rootfs type layers', () => r.config.rootfs.type, 'layers'],
    ['SHELL applies to shell-form CMD', () => shell.config.config!.Cmd, ['/bin/sh', '-xc', 'echo hi']],
    ['SHELL applies to shell-form ENTRYPOINT', () => shell.config.config!.Entrypoint, ['/bin/sh', '-xc', 'echo ep']],
    ['ENTRYPOINT keeps a CMD set earlier in the same stage', () => shell.config.config!.Cmd, ['/bin/sh', '-xc', 'echo hi']],
    ['ENTRYPOINT clears a CMD inherited from the base stage', () => entry.config.config!.Cmd ?? null, null],
    ['HEALTHCHECK without options has only Test', () => shell.config.config!.Healthcheck, { Test: ['CMD-SHELL', 'true'] }],
    ['HEALTHCHECK NONE', () => entry.config.config!.Healthcheck, { Test: ['NONE'] }],
    ['Entrypoint of the child stage', () => entry.config.config!.Entrypoint, ['/e']],
  ])('%s', (_name, get, want) => {
    expect(get()).toEqual(want);
  });

  it('the proxy build arg reaches RUN without an ARG value in the image', async () => {
    expect(await r.read('proxy-seen')).toBe('http://proxy.invalid:3128\n');
  });

  it('WORKDIR creates its directory, owned by the USER in effect', async () => {
    const st = await r.lstat('srv/app/sub');
    expect(st.isDirectory()).toBe(true);
    expect(st.uid).toBe(1000);
  });
});

describe('history', () => {
  const byPrefix = (p: string) => hist().find((e) => e.created_by?.includes(p));
  it.each<[string, string, boolean]>([
    ['ENV', '#(nop) ENV A=1 B=two words', true],
    ['LABEL', '#(nop) LABEL org.example.version', true],
    ['EXPOSE', '#(nop) EXPOSE 80', true],
    ['VOLUME', '#(nop) VOLUME /data', true],
    ['USER', '#(nop) USER 1000:1000', true],
    ['STOPSIGNAL', '#(nop) STOPSIGNAL SIGTERM', true],
    ['HEALTHCHECK', '#(nop) HEALTHCHECK', true],
    ['ONBUILD', '#(nop) ONBUILD RUN echo child', true],
    ['ENTRYPOINT', '#(nop) ENTRYPOINT ["/bin/entry","arg"]', true],
    ['CMD', '#(nop) CMD ["default"]', true],
    ['SHELL', '#(nop) SHELL ["/bin/sh","-ec"]', true],
    ['ARG', '#(nop) ARG VERSION=1.0', true],
    ['WORKDIR', '#(nop) WORKDIR /srv/app', false],
    ['RUN', 'echo "$HTTP_PROXY" > /proxy-seen', false],
  ])('%s has created_by and empty_layer as docker writes them', (_k, text, empty) => {
    const e = byPrefix(text);
    expect(e).toBeDefined();
    expect(e!.empty_layer === true).toBe(empty);
  });

  it('the proxy ARG value is not in any history entry', () => {
    expect(JSON.stringify(hist())).not.toContain('proxy.invalid');
  });

  it('one layer per non-empty history entry', () => {
    expect(hist().filter((e) => !e.empty_layer).length).toBe(r.config.rootfs.diff_ids.length);
  });

  it('every history entry has a created time', () => {
    expect(hist().every((e) => typeof e.created === 'string' && !Number.isNaN(Date.parse(e.created!)))).toBe(true);
  });
});
