import type { Digest } from '@tsbuild/oci';
import type { Image } from '@tsbuild/store';

export interface HistoryRow {
  created?: string;
  createdBy: string;
  comment?: string;
  author?: string;
  /** True for steps that changed only the config (ENV, CMD, LABEL…). */
  emptyLayer: boolean;
  /** The layer blob's size (as stored or sent: usually compressed); 0 for empty layers. */
  size: number;
  /** The layer this step made. */
  layer?: Digest;
}

/**
 * The image's history, newest first, as `docker history` lists it. Entries not marked
 * `empty_layer` are matched to the manifest's layers in order (image-spec config.md); an image
 * without history gets one row per layer.
 */
export async function imageHistory(image: Image): Promise<HistoryRow[]> {
  const [manifest, config] = await Promise.all([image.manifest(), image.config()]);
  const layers = manifest.layers;
  const rows: HistoryRow[] = [];
  const history = config.history ?? [];
  if (history.length === 0) {
    for (const l of layers) rows.push({ createdBy: '', emptyLayer: false, size: l.size, layer: l.digest });
    return rows.reverse();
  }
  let next = 0;
  for (const h of history) {
    const empty = h.empty_layer === true;
    const layer = empty ? undefined : layers[next++];
    const row: HistoryRow = { createdBy: h.created_by ?? '', emptyLayer: empty, size: layer?.size ?? 0 };
    if (h.created !== undefined) row.created = h.created;
    if (h.comment !== undefined) row.comment = h.comment;
    if (h.author !== undefined) row.author = h.author;
    if (layer !== undefined) row.layer = layer.digest;
    rows.push(row);
  }
  return rows.reverse();
}
