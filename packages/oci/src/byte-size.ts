/**
 * A size as docker's flags take it (docker/go-units RAMInBytes): a number with an optional unit
 * b, k, m, g or t (binary multiples; `kb`, `mib` and the like accepted), e.g. 64m, 1.5g, 512.
 * Undefined when `text` is not one: the caller words the error for its flag or directive.
 */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$/i.exec(text.trim());
  if (!m) return undefined;
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'b' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}
