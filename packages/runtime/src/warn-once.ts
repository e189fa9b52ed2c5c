const warned = new Set<string>();

/**
 * A process warning (one line from the CLI), once per process for the same text: for what a run
 * was asked and cannot do on this host but may go on without (limits rootless, LSM labels).
 */
export function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message);
}
