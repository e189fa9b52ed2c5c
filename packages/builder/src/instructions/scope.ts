import type { Writable } from 'node:stream';
import type { ContainerRunOptions, CopyFiles, ImageState, RunDefaults, RunMount } from '@tsbuild/container';
import type { CopyOp, ExtraMount, RunResult, RunUsage } from '@tsbuild/runtime';
import type { Instruction } from '../dockerfile.js';

/**
 * What an instruction handler changes: the stage's working container (WorkingContainer in build
 * mode). Handlers call nothing else that changes the image, so a recording fake of this interface
 * tests them without root.
 */
export interface StepTarget {
  /** The image so far: handlers edit its config and history. */
  readonly state: ImageState;
  applyCopy(ops: CopyOp[], opts?: { direct?: boolean; signal?: AbortSignal }): Promise<void>;
  runStep(argv: string[], env: Map<string, string>, user: string, opts: ContainerRunOptions & { workdir: string }): Promise<RunResult>;
  owner(spec: string): Promise<{ uid: number; gid: number }>;
  missingPaths(paths: string[]): Promise<string[]>;
  removeMountpoints(paths: string[]): Promise<void>;
}

/** What a handler gets from the build: the instruction's variables, its step, and the build's services. */
export interface StepScope {
  /** The Dockerfile's name, for errors. */
  readonly file: string;
  readonly escape: string;
  readonly step: number;
  /** Variables for expansion: the stage's ARGs and the image's ENV. */
  readonly vars: Map<string, string>;
  /** Build args in scope: they reach RUN's environment but not the image's Env. */
  readonly args: Map<string, string>;
  /** Proxy variables given as build args (docker passes them to RUN undeclared). */
  readonly proxy: Map<string, string>;
  /** Per stage: whether this stage set CMD itself (an ENTRYPOINT then keeps it). */
  readonly stage: { cmdSet?: boolean };
  /** COPY/ADD: the op resolved (and hashed for the cache key) before the handler runs. */
  readonly prepared: { copy?: CopyFiles; entries?: number };
  readonly runtime?: RunDefaults;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly signal?: AbortSignal;
  /** How to see this step's whole output once the build is over (its log is kept), for a failure's message. */
  readonly logHint?: string;
  /** The history time of this step (SOURCE_DATE_EPOCH or now). */
  timestamp(): string;
  fail(message: string): never;
  /** Fails pointing at `needle` (a flag, a word) in the instruction. */
  failAt(needle: string, message: string): never;
  /** A filesystem change: `change` runs, then the build's layer policy commits it (or keeps it for the stage's one layer). */
  layerStep(createdBy: string, change: () => Promise<void>, dropIfEmpty?: boolean): Promise<void>;
  /** The host side of RUN --mount (cache dirs, bind sources, secrets, tmpfs). */
  runMounts(mounts: RunMount[], scratch: string): Promise<{ mounts: ExtraMount[]; release: () => void }>;
  /** After a RUN: its wall time and what its cgroup counted (the build's `step-usage` event). */
  reportUsage(wallMs: number, usage?: RunUsage): void;
  /**
   * A RUN failed: keep its state for `tsbuild debug` when the build has a record (issue 19).
   * Returns what the failure message adds (how to enter the state), or '' when nothing was kept.
   */
  keepFailed?(run: { argv: string[]; env: Map<string, string>; user: string; workdir: string; network?: 'none' | 'host' | 'private'; mounts: RunMount[] }): Promise<string>;
  /** A private scratch directory for this step. */
  readonly scratch: string;
}

export type Handler = (ins: Instruction, scope: StepScope, wc: StepTarget) => Promise<void>;
