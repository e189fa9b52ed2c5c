import type { HistoryEntry } from '@tsbuild/oci';
import { type Instruction, parseJsonForm } from '../dockerfile.js';
import { expandWord, expandWords, splitRaw } from '../expand.js';
import { HEALTHCHECK_FLAGS, parseDuration, parseKeyValues, parseRetries } from './checks.js';
import type { Handler, StepScope, StepTarget } from './scope.js';

/** An instruction that changes only the config: a history entry with no layer, as docker writes it. */
function nop(scope: StepScope, text: string): HistoryEntry {
  return { created: scope.timestamp(), created_by: `/bin/sh -c #(nop) ${text}`, empty_layer: true };
}

function record(wc: StepTarget, entry: HistoryEntry): void {
  wc.state.addHistory(entry);
}

export const ARG: Handler = async (ins, scope, wc) => record(wc, nop(scope, ins.text));

export const ENV: Handler = async (ins, scope, wc) => {
  const pairs = parseKeyValues(ins, scope.vars, scope.escape, scope.file);
  for (const [k, v] of pairs) wc.state.setEnv(k, v);
  record(wc, nop(scope, `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`));
};

export const LABEL: Handler = async (ins, scope, wc) => {
  const labels = (wc.state.container.Labels ??= {});
  for (const [k, v] of parseKeyValues(ins, scope.vars, scope.escape, scope.file)) labels[k] = v;
  record(wc, nop(scope, ins.text));
};

export const MAINTAINER: Handler = async (ins, scope, wc) => {
  wc.state.config.author = expandWord(ins.args, scope.vars, scope.escape);
  record(wc, nop(scope, ins.text));
};

function shellForm(wc: StepTarget, ins: Instruction): string[] {
  return ins.json ?? [...(wc.state.container.Shell ?? ['/bin/sh', '-c']), ins.args];
}

export const CMD: Handler = async (ins, scope, wc) => {
  const c = wc.state.container;
  c.Cmd = shellForm(wc, ins);
  scope.stage.cmdSet = true;
  record(wc, nop(scope, `CMD ${JSON.stringify(c.Cmd)}`));
};

export const ENTRYPOINT: Handler = async (ins, scope, wc) => {
  const c = wc.state.container;
  c.Entrypoint = shellForm(wc, ins);
  // An ENTRYPOINT set in a stage clears a CMD inherited from the base image, but not one
  // this stage set itself (BuildKit and buildah both track whether CMD was set here).
  if (!scope.stage.cmdSet) c.Cmd = null;
  record(wc, nop(scope, `ENTRYPOINT ${JSON.stringify(c.Entrypoint)}`));
};

export const SHELL: Handler = async (ins, scope, wc) => {
  // checkInstruction made sure of the JSON form before the build started.
  wc.state.container.Shell = ins.json!;
  record(wc, nop(scope, `SHELL ${JSON.stringify(ins.json)}`));
};

export const USER: Handler = async (ins, scope, wc) => {
  const c = wc.state.container;
  c.User = expandWord(ins.args, scope.vars, scope.escape);
  record(wc, nop(scope, `USER ${c.User}`));
};

export const EXPOSE: Handler = async (ins, scope, wc) => {
  const ports = (wc.state.container.ExposedPorts ??= {});
  for (const p of expandWords(ins.args, scope.vars, scope.escape)) ports[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
  record(wc, nop(scope, ins.text));
};

export const VOLUME: Handler = async (ins, scope, wc) => {
  const vols = (wc.state.container.Volumes ??= {});
  for (const v of ins.json ?? expandWords(ins.args, scope.vars, scope.escape)) vols[v] = {};
  record(wc, nop(scope, ins.text));
};

export const STOPSIGNAL: Handler = async (ins, scope, wc) => {
  wc.state.container.StopSignal = expandWord(ins.args, scope.vars, scope.escape);
  record(wc, nop(scope, ins.text));
};

export const HEALTHCHECK: Handler = async (ins, scope, wc) => {
  const c = wc.state.container;
  const words = ins.json ? undefined : splitRaw(ins.args, scope.escape);
  if (!ins.json && words![0]?.toUpperCase() === 'NONE') {
    c.Healthcheck = { Test: ['NONE'] };
  } else {
    const rest = ins.args.replace(/^\s*CMD\b\s*/i, '');
    const json = parseJsonForm(rest);
    const hc: NonNullable<typeof c.Healthcheck> = { Test: json ? ['CMD', ...json] : ['CMD-SHELL', rest] };
    for (const [flag, field] of HEALTHCHECK_FLAGS) {
      const v = ins.flags.get(flag)?.at(-1);
      if (v !== undefined) hc[field] = parseDuration(ins, flag, v, scope.file);
    }
    const retries = ins.flags.get('retries')?.at(-1);
    if (retries !== undefined) hc.Retries = parseRetries(ins, retries, scope.file);
    c.Healthcheck = hc;
  }
  record(wc, nop(scope, ins.text));
};

export const ONBUILD: Handler = async (ins, scope, wc) => {
  (wc.state.container.OnBuild ??= []).push(ins.args.trim());
  record(wc, nop(scope, ins.text));
};

