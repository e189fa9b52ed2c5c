import type { Digest } from '@tsbuild/oci';
import type { BuildEvent, BuildResult } from './build.js';

/**
 * `tsbuild build --metadata-file`: buildx's keys for the image (containerimage.digest,
 * containerimage.config.digest, image.name) and, per step, what --explain-cache, the timings, the
 * RUN costs and the layer events said. Its schema is schemas/build-metadata.schema.json.
 */
export interface BuildMetadata {
  'containerimage.digest': Digest;
  'containerimage.config.digest': Digest;
  'image.name'?: string;
  steps: StepMetadata[];
}

export interface StepMetadata {
  step: number;
  stage: number;
  instruction: string;
  /** The Dockerfile line (an ONBUILD trigger: its FROM's). */
  line?: number;
  cache?: { hit: boolean; source?: 'local' | 'registry'; reason: string };
  durationMs?: number;
  usage?: { wallMs: number; cpuMs?: number; peakMemoryBytes?: number; writtenBytes?: number };
  layer?: { digest: Digest; size: number };
}

/** Collects a build's events (pass each to `onEvent`) into its metadata. */
export class MetadataRecorder {
  private readonly steps = new Map<number, StepMetadata>();

  onEvent(e: BuildEvent): void {
    if (e.type === 'step') {
      this.steps.set(e.step, { step: e.step, stage: e.stage, instruction: e.text, ...(e.line !== undefined ? { line: e.line } : {}) });
      return;
    }
    if (e.type !== 'cache' && e.type !== 'step-done' && e.type !== 'step-usage' && e.type !== 'layer') return;
    const s = this.steps.get(e.step);
    if (!s) return;
    if (e.type === 'cache') s.cache = { hit: e.hit, ...(e.source !== undefined ? { source: e.source } : {}), reason: e.reason };
    else if (e.type === 'step-done') s.durationMs = e.ms;
    else if (e.type === 'layer') s.layer = { digest: e.digest, size: e.size };
    else {
      s.usage = {
        wallMs: e.wallMs,
        ...(e.cpuMs !== undefined ? { cpuMs: e.cpuMs } : {}),
        ...(e.peakMemoryBytes !== undefined ? { peakMemoryBytes: e.peakMemoryBytes } : {}),
        ...(e.writtenBytes !== undefined ? { writtenBytes: e.writtenBytes } : {}),
      };
    }
  }

  finish(result: BuildResult): BuildMetadata {
    return {
      'containerimage.digest': result.manifest.digest,
      'containerimage.config.digest': result.imageId,
      ...(result.names.length > 0 ? { 'image.name': result.names.join(',') } : {}),
      steps: [...this.steps.values()].sort((a, b) => a.step - b.step),
    };
  }
}
