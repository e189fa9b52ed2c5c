import type { HelperErrorCode } from './helper-protocol.js';

/** An error the helper reports to tsbuild as one of @tsbuild/oci's kinds. */
export class HelperFailure extends Error {
  constructor(
    readonly code: HelperErrorCode,
    message: string,
  ) {
    super(message);
  }
}
