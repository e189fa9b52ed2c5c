import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, openHarness } from './harness.js';

/** Errors name Dockerfile:line[:column] and the offending text; the build stops cleanly. */
let h: Harness;
beforeAll(async () => {
  h = await openHarness('errors');
});
afterAll(() => h.close());

describe('errors', () => {
  it.each<[string, string, Record<string, string>?]>([
    ['FROM busybox\nFROBNICATE x\n', 'Dockerfile:2:1: unknown instruction: FROBNICATE'],
    ['FROM busybox\n  bogus x\n', 'Dockerfile:2:3: unknown instruction: bogus'],
    ['FROM busybox\nCOPY --frm=x a /b\n', 'Dockerfile:2:6: unknown flag: COPY --frm'],
    ['FROM busybox\nADD --from=x a /b\n', 'Dockerfile:2:5: unknown flag: ADD --from (use COPY --from)'],
    ['FROM busybox\nRUN --mout=type=cache,target=/x true\n', 'Dockerfile:2:5: unknown flag: RUN --mout'],
    ['FROM --plat=linux busybox\n', 'Dockerfile:1:6: unknown flag: FROM --plat'],
    ['FROM busybox\nHEALTHCHECK --every=1s CMD true\n', 'Dockerfile:2:13: unknown flag: HEALTHCHECK --every'],
    ['FROM busybox\nRUN <<EOF\necho hi\n', 'Dockerfile:2:5: unterminated heredoc <<EOF'],
    ['FROM busybox\nCOPY <<-"END" /x\nbody\n', 'Dockerfile:2:6: unterminated heredoc <<-"END"'],
    ['FROM busybox\nCOPY --from=nosuchstage /x /y\n', 'Dockerfile:2:6: COPY --from=nosuchstage: no stage of that name, and no such image in the local store'],
    ['FROM busybox\nCOPY --from=3 /x /y\n', 'Dockerfile:2:6: COPY --from=3: no stage 3 before this one'],
    ['FROM busybox\nRUN --mount=type=bind,from=ghost,target=/g true\n', 'Dockerfile:2:23: RUN --mount from=ghost: no stage of that name, and no such image in the local store'],
    ['FROM busybox\nENV A=${X:?must_be_set}\n', 'Dockerfile:2:7: X: must_be_set (in ${X:?must_be_set})'],
    ['FROM busybox\nWORKDIR /${NOPE:?}\n', 'Dockerfile:2:10: NOPE: is not allowed to be unset (in ${NOPE:?})'],
    ['FROM busybox\nLABEL a=b \\\n  c=${MISSING:?needed}\n', 'Dockerfile:3:5: MISSING: needed (in ${MISSING:?needed})'],
    ['FROM busybox\nCOPY missing.txt /x\n', 'Dockerfile:2: COPY source missing.txt: no such file or directory in the build context'],
    ['FROM busybox\nRUN echo out; exit 4\n', 'Dockerfile:2: RUN echo out; exit 4 exited with status 4 (last output: "out")'],
    ['FROM busybox\nCOPY a b /notdir\n', 'Dockerfile:2: When using COPY with more than one source file, the destination must be a directory and end with a /', { a: 'a', b: 'b' }],
    ['RUN true\nFROM busybox\n', 'Dockerfile:1: no build stage in current context'],
    ['FROM a b\n', 'Dockerfile:1: FROM requires either one or three arguments'],
    ['FROM busybox\nSHELL /bin/bash\n', 'Dockerfile:2: SHELL requires the arguments to be in JSON form'],
    ['FROM busybox\nHEALTHCHECK --retries=0 CMD true\n', 'Dockerfile:2: HEALTHCHECK --retries=0: want a whole number of at least 1'],
    ['FROM busybox\nONBUILD ONBUILD RUN x\n', 'Dockerfile:2: ONBUILD ONBUILD is not allowed'],
    ['FROM busybox\nCOPY --chmod=abc f /f\n', 'Dockerfile:2:6: COPY --chmod=abc: want an octal mode', { f: 'f' }],
    ['FROM busybox\nUSER ghost\nRUN true\n', 'Dockerfile:3: unable to find user ghost'],
    ['FROM busybox\nARG 1BAD=x\n', 'Dockerfile:2: ARG name "1BAD" is not a valid variable name'],
    ['# check=bogus\nFROM busybox\n', 'Dockerfile:1:1: # check=bogus: want skip=RULE'],
  ])('%j fails with %s', async (df, message, files = {}) => {
    await expect(h.buildIt({ Dockerfile: df, ...files }, { pull: 'never' })).rejects.toThrow(message);
  });

  it('an unknown --target names it', async () => {
    await expect(h.buildIt({ Dockerfile: 'FROM busybox AS a\n' }, { target: 'b' })).rejects.toThrow('target stage "b" could not be found in Dockerfile');
  });

  it('# syntax= and a valid # check= are accepted', async () => {
    const r = await h.buildIt({ Dockerfile: '# syntax=docker/dockerfile:1.7\n# check=skip=JSONArgsRecommended;error=true\nFROM busybox\nLABEL ok=1\n' });
    expect(r.config.config?.Labels?.ok).toBe('1');
  });

  it.each<[string, string]>([
    ['HEALTHCHECK --interval=soon CMD true', 'HEALTHCHECK --interval=soon: want a duration'],
    ['RUN --network=bridge true', 'RUN --network=bridge: want none, host or default'],
    ['RUN --security=insecure true', 'RUN --security=insecure: only sandbox is supported'],
    ['RUN --mount=type=nope,target=/x true', 'RUN --mount'],
    ['ONBUILD FROM busybox', 'ONBUILD FROM is not allowed'],
    ['SHELL sh -c', 'SHELL requires the arguments to be in JSON form'],
    ['COPY --chmod=999 f /f', 'COPY --chmod=999: want an octal mode'],
    ['HEALTHCHECK NONE --retries=1', 'HEALTHCHECK NONE takes no arguments or options'],
  ])('every instruction is checked before the first RUN runs: %s on line 40', async (bad, message) => {
    const lines = ['FROM busybox', 'RUN echo ran > /ran', ...Array.from({ length: 37 }, (_, i) => `LABEL l${i}=${i}`), bad];
    const steps: number[] = [];
    const started = Date.now();
    await expect(h.buildIt({ Dockerfile: `${lines.join('\n')}\n`, f: 'f' }, { onEvent: (e) => void (e.type === 'step' && steps.push(e.step)) })).rejects.toThrow(
      new RegExp(`^Dockerfile:40(:\\d+)?: ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
    // Not one step started: the RUN on line 2 never ran.
    expect(steps).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a failed build leaves no active snapshots behind', async () => {
    await expect(h.buildIt({ Dockerfile: 'FROM busybox\nRUN echo x > /x\nRUN exit 1\n' })).rejects.toThrow('exited with status 1');
    const keys: string[] = [];
    await h.snapshotter.walk((i) => {
      if (i.kind === 'active') keys.push(i.name);
    });
    expect(keys).toEqual([]);
  });
});
