import { TarParser } from './tar-parser.js';
import type { TarHeader } from './tar-format.js';

/** One entry of a tar stream, with its body. */
export interface TarEntry extends TarHeader {
  body: AsyncIterable<Buffer>;
}

/**
 * Reads a tar stream entry by entry (see TarParser for the formats understood). Each entry is
 * yielded once its body has arrived, so the body is held in memory: this is for inspecting
 * layers (tests, tools); `apply` drives TarParser directly and streams bodies to disk.
 */
export async function* readTar(src: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const ready: TarEntry[] = [];
  let current: { h: TarHeader; parts: Buffer[] } | undefined;
  const parser = new TarParser({
    entry: (h) => void (current = { h, parts: [] }),
    data: (c) => void current!.parts.push(c),
    end: () => {
      const { h, parts } = current!;
      current = undefined;
      ready.push({ ...h, body: (async function* () { yield* parts; })() });
    },
  });
  // Reads to the end even after the end-of-archive blocks, like apply, so a hashing source sees every byte.
  for await (const chunk of src) {
    parser.push(chunk);
    yield* ready.splice(0);
  }
  parser.finish();
}
