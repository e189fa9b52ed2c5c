/**
 * Lending stream chunks for reuse, between a producer and a consumer that do not know each other
 * (the layer tar writer of @tsbuild/snapshotter and the parallel gzip and blob writer of
 * @tsbuild/store, neither of which imports the other). The rules:
 *   - A chunk the producer emits may carry a function under the registered symbol
 *     `Symbol.for('tsbuild.releaseChunk')` (RELEASE_CHUNK). Pass-through stages (a hashing
 *     Transform, Duplex.from) hand the same Buffer object on, so the function travels with it;
 *     a slice or copy of the chunk does not carry it.
 *   - The consumer that holds the chunk LAST — it has copied or finished with the bytes, and no
 *     other stage still holds the chunk or a view of it — may call the function, once. The
 *     producer may then overwrite the memory. A stage that hands one chunk to several consumers
 *     (a tee) must hand on copies, or none of them may release.
 *   - A consumer that never releases loses nothing but the reuse: the producer allocates a fresh
 *     buffer whenever none has come back, and unreleased buffers are garbage-collected.
 * So a chunk is recycled only on an explicit promise from its last holder; no chunk is reused
 * on a guess about how long a consumer keeps it (a file writer holds a chunk until its write(2)
 * completes, an accumulating reader holds it forever).
 */
export const RELEASE_CHUNK: unique symbol = Symbol.for('tsbuild.releaseChunk');

/** A chunk that may carry the release function (see RELEASE_CHUNK). */
export interface ReleasableChunk extends Buffer {
  [RELEASE_CHUNK]?: () => void;
}

/** Calls a chunk's release function if it has one: for the chunk's last holder only. */
export function releaseChunk(chunk: Uint8Array): void {
  (chunk as ReleasableChunk)[RELEASE_CHUNK]?.();
}
