import type { ContainerConfig, Descriptor, Digest, HistoryEntry, ImageConfig } from '@tsbuild/oci';
import { chainId, hostPlatform } from '@tsbuild/oci';

/**
 * The image a stage is building, between instructions: its config (with history and diff_ids)
 * and layer descriptors, and the committed snapshot that holds its filesystem (named by the
 * chainID of its diff_ids, so a later build or another image reuses it).
 */
export class ImageState {
  constructor(
    readonly config: ImageConfig,
    readonly layers: Descriptor[],
  ) {}

  static scratch(): ImageState {
    const p = hostPlatform();
    const config: ImageConfig = {
      architecture: p.architecture,
      os: p.os,
      ...(p.variant ? { variant: p.variant } : {}),
      config: {},
      rootfs: { type: 'layers', diff_ids: [] },
      history: [],
    };
    return new ImageState(config, []);
  }

  static from(config: ImageConfig, layers: Descriptor[]): ImageState {
    const copy = structuredClone(config);
    copy.config ??= {};
    copy.history ??= [];
    return new ImageState(copy, [...layers]);
  }

  get container(): ContainerConfig {
    return (this.config.config ??= {});
  }

  /** The committed snapshot of this image's filesystem, or undefined for an empty one. */
  get snapshot(): string | undefined {
    return chainId(this.config.rootfs.diff_ids);
  }

  env(): Map<string, string> {
    const m = new Map<string, string>();
    for (const kv of this.container.Env ?? []) {
      const i = kv.indexOf('=');
      if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
    }
    return m;
  }

  setEnv(key: string, value: string): void {
    const env = (this.container.Env ??= []);
    const i = env.findIndex((kv) => kv.startsWith(`${key}=`));
    if (i >= 0) env[i] = `${key}=${value}`;
    else env.push(`${key}=${value}`);
  }

  /** Adds a layer and its (non-empty) history entry, at `historyIndex` or at the end. */
  addLayer(layer: Descriptor, diffID: Digest, history: HistoryEntry, historyIndex?: number): void {
    this.layers.push(layer);
    this.config.rootfs.diff_ids.push(diffID);
    if (historyIndex === undefined) this.config.history!.push(history);
    else this.config.history!.splice(historyIndex, 0, history);
  }

  addHistory(history: HistoryEntry): void {
    this.config.history!.push({ ...history, empty_layer: true });
  }
}
