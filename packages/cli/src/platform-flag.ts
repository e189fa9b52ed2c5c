import type { Platform } from '@tsbuild/oci';
import { CliError } from './cli-kit.js';

/**
 * A `--platform os/arch[/variant]` value, normalised; a malformed one is a usage error (one
 * line, exit status 2). `parse` is @tsbuild/oci's parsePlatform, passed in so that commands
 * that load @tsbuild/oci lazily keep doing so.
 */
export function platformFlag(parse: (s: string) => Platform, value: string): Platform {
  try {
    return parse(value.trim());
  } catch (e) {
    throw new CliError(`--platform ${value}: ${(e as Error).message}`, 2);
  }
}
