// Imports nothing: the helper's modules throw HelperFailure and helper-protocol.ts carries its code,
// so a dependency of its own here would close a ring through them.

/** The typed error kinds of @tsbuild/oci the helper can report. */
export type HelperErrorCode = 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' | 'ALREADY_EXISTS' | 'INTERNAL';

/** An error the helper reports to tsbuild as one of @tsbuild/oci's kinds. */
export class HelperFailure extends Error {
  constructor(
    readonly code: HelperErrorCode,
    message: string,
  ) {
    super(message);
  }
}
