import { createRequire } from 'node:module';
import type * as Crypto from 'node:crypto';
import type * as Zlib from 'node:zlib';

/**
 * node:crypto and node:zlib, loaded on first use. Loading them takes ~1.5 and ~1.3 ms, and the CLI
 * bundle would otherwise do it at start-up, with the first module that names them: push and pull
 * now send their first requests before either loads, and images or inspect never load zlib.
 */
const load = createRequire(import.meta.url);
let cryptoModule: typeof Crypto | undefined;
let zlibModule: typeof Zlib | undefined;

export function crypto(): typeof Crypto {
  cryptoModule ??= load('node:crypto') as typeof Crypto;
  return cryptoModule;
}

export function zlib(): typeof Zlib {
  zlibModule ??= load('node:zlib') as typeof Zlib;
  return zlibModule;
}
