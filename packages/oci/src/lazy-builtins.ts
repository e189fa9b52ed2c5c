import { createRequire } from 'node:module';
import type * as ChildProcess from 'node:child_process';
import type * as Crypto from 'node:crypto';
import type * as Net from 'node:net';
import type * as Tty from 'node:tty';
import type * as Zlib from 'node:zlib';

/**
 * `make()` run once, on first call, its value kept. For what is costly to load and not always
 * needed: node:crypto and node:zlib below, the libc addon of @tsbuild/linux. The CLI
 * bundle runs every module a command includes at start-up, so a module-level load would be paid
 * by every command.
 */
export function lazy<T>(make: () => T): () => T {
  let value: T | undefined;
  let made = false;
  return () => {
    if (!made) {
      value = make();
      made = true;
    }
    return value as T;
  };
}

const load = createRequire(import.meta.url);

/** node:crypto on first use (~1.5 ms to load): push and pull send their first requests before it loads. */
export const crypto = lazy(() => load('node:crypto') as typeof Crypto);

/** node:zlib on first use (~1.3 ms to load): images, inspect and a push of stored gzip blobs never load it. */
export const zlib = lazy(() => load('node:zlib') as typeof Zlib);

/**
 * node:child_process on first use (~7 ms to load, with node:net and node:stream under it): from,
 * commit, config and the listing commands start no process and never load it.
 */
export const childProcess = lazy(() => load('node:child_process') as typeof ChildProcess);

/** node:net on first use (with node:stream under it): for the sockets of a process started by posix_spawn. */
export const net = lazy(() => load('node:net') as typeof Net);

/** node:tty on first use (node:net and node:stream load under it): for a runtime that may run on the terminal. */
export const tty = lazy(() => load('node:tty') as typeof Tty);
