import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform, formatPlatform } from '@tsbuild/oci';
import { type Built, type Harness, openHarness } from './harness.js';

/** RUN forms, heredocs, ARG scoping, platform ARGs, ONBUILD, multi-stage with --target, and the cache. */
let h: Harness;
let r: Built;
let target: Built;
let child: Built;
const df = [
  'ARG BASE=busybox',
  'ARG GLOBAL=g',
  'FROM ${BASE} AS first',
  'ARG GLOBAL',
  'RUN echo "first $GLOBAL" > /first',
  'FROM first AS second',
  'RUN echo "second sees [$GLOBAL]" > /second',
  'FROM busybox AS unused',
  'RUN exit 1',
  'FROM busybox AS final',
  'ARG TARGETPLATFORM',
  'ARG TARGETOS',
  'ARG TARGETARCH',
  'ARG BUILDPLATFORM',
  'ARG STAGEARG=s1',
  'RUN echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$BUILDPLATFORM" > /platform',
  'RUN ["/bin/sh", "-c", "echo exec form > /exec"]',
  'RUN echo "$0" > /shell0',
  'RUN echo a \\',
  '  # a comment inside a continuation is dropped',
  '  b > /joined',
  'RUN <<EOF',
  'echo heredoc-run > /hd',
  'EOF',
  'RUN <<A cat > /two-a && <<B cat > /two-b',
  'one',
  'A',
  'two',
  'B',
  'COPY --from=second /second /from-second',
  'COPY --from=first /first /from-first',
  'COPY --from=0 /first /from-index',
  'RUN echo "$STAGEARG" > /stagearg',
  'USER app',
  'RUN id -u > /tmp/uid',
  'USER root',
  '',
].join('\n');

beforeAll(async () => {
  h = await openHarness('stages');
  r = await h.buildIt({ Dockerfile: df });
  target = await h.buildIt({ Dockerfile: df }, { target: 'second' });
  await h.buildIt({ Dockerfile: 'FROM busybox\nONBUILD RUN echo triggered > /onbuild\nONBUILD ENV FROM_TRIGGER=1\n' }, { tags: ['onbuild-base'] });
  child = await h.buildIt({ Dockerfile: 'FROM onbuild-base\nRUN cat /onbuild > /child\n' });
});
afterAll(() => h.close());

describe('instructions and stages', () => {
  const p = formatPlatform(hostPlatform());
  it.each<[string, () => Promise<unknown>, unknown]>([
    ['FROM takes a global ARG', async () => r.read('from-first'), 'first g\n'],
    ['a global ARG redeclared without value takes the global value', async () => r.read('from-first'), 'first g\n'],
    ['a global ARG not redeclared is empty in the stage', async () => r.read('from-second'), 'second sees []\n'],
    ['platform ARGs', async () => r.read('platform'), `${p}|${hostPlatform().os}|${hostPlatform().architecture}|${p}\n`],
    ['RUN exec form', async () => r.read('exec'), 'exec form\n'],
    ['RUN shell form runs /bin/sh -c', async () => r.read('shell0'), '/bin/sh\n'],
    ['continuations joined, comment lines dropped', async () => r.read('joined'), 'a b\n'],
    ['RUN <<EOF', async () => r.read('hd'), 'heredoc-run\n'],
    ['several heredocs on one line (first)', async () => r.read('two-a'), 'one\n'],
    ['several heredocs on one line (second)', async () => r.read('two-b'), 'two\n'],
    ['COPY --from by index', async () => r.read('from-index'), 'first g\n'],
    ['stage ARG default', async () => r.read('stagearg'), 's1\n'],
    ['USER applies to RUN', async () => r.read('tmp/uid'), '1000\n'],
    ['the final config user is the last USER', async () => r.config.config?.User, 'root'],
    ['--target builds that stage', async () => target.read('second'), 'second sees []\n'],
    ['--target stage has its base stage\'s files', async () => target.read('first'), 'first g\n'],
    ['--target does not include later stages', async () => target.exists('platform'), false],
    ['an unneeded failing stage is not built', async () => r.exists('first'), false],
    ['ONBUILD RUN trigger runs in the child build', async () => child.read('child'), 'triggered\n'],
    ['ONBUILD ENV trigger applies', async () => child.config.config?.Env?.includes('FROM_TRIGGER=1'), true],
    ['the child does not inherit the triggers', async () => child.config.config?.OnBuild ?? null, null],
    ['ARG values are not in history created_by of RUN', async () => JSON.stringify(r.config.history).includes('STAGEARG=s1 '), false],
  ])('%s', async (_n, get, want) => {
    expect(await get()).toEqual(want);
  });
});

describe('cache', () => {
  it('a rebuild with nothing changed runs nothing and gives the same image ID', async () => {
    const again = await h.buildIt({ Dockerfile: df });
    expect(again.imageId).toBe(r.imageId);
    expect(again.output).toBe('');
  });

  it('a changed build arg rebuilds from the first step using it', async () => {
    const changed = await h.buildIt({ Dockerfile: df }, { buildArgs: { STAGEARG: 's2' } });
    expect(changed.imageId).not.toBe(r.imageId);
    expect(await changed.read('stagearg')).toBe('s2\n');
  });

  it('--no-cache runs every step again (RUN output appears)', async () => {
    const nc = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN echo ran\n' });
    const again = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN echo ran\n' });
    const forced = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN echo ran\n' }, { noCache: true });
    expect([nc.output, again.output, forced.output]).toEqual(['ran\n', '', 'ran\n']);
  });

  it('a changed COPY source rebuilds that step; an unchanged earlier step is cached', async () => {
    const a = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN echo before\nCOPY f /f\nRUN echo after\n', f: 'one' });
    const b = await h.buildIt({ Dockerfile: 'FROM busybox\nRUN echo before\nCOPY f /f\nRUN echo after\n', f: 'two' });
    expect(a.output).toBe('before\nafter\n');
    expect(b.output).toBe('after\n');
    expect(await b.read('f')).toBe('two');
  });
});
