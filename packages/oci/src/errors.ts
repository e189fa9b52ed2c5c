/**
 * Typed errors by kind, after containerd's errdefs. Callers branch on `code`; the CLI maps each
 * kind to one clear line and an exit status. Messages name what failed and where (a path,
 * Dockerfile:line, a registry's answer) and never contain credentials.
 */
export type ErrorCode =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE'
  | 'DATA_LOSS'
  | 'CANCELLED'
  | 'INTERNAL';

export class TsbuildError extends Error {
  readonly code: ErrorCode = 'INTERNAL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
/** Something named does not exist: an image, a blob, a snapshot, a file in the build context. */
export class NotFoundError extends TsbuildError {
  override readonly code = 'NOT_FOUND';
}
/** Something being created exists already. */
export class AlreadyExistsError extends TsbuildError {
  override readonly code = 'ALREADY_EXISTS';
}
/** The caller's input is malformed: a bad reference, digest, Dockerfile line or layer entry. */
export class InvalidArgumentError extends TsbuildError {
  override readonly code = 'INVALID_ARGUMENT';
}
/** The system is not in the state the operation needs (a snapshot has children, a RUN failed). */
export class FailedPreconditionError extends TsbuildError {
  override readonly code = 'FAILED_PRECONDITION';
}
/** A service or resource could not be reached now; trying again may work. */
export class UnavailableError extends TsbuildError {
  override readonly code = 'UNAVAILABLE';
}
/** Stored data does not match its digest or is otherwise corrupt. */
export class DataLossError extends TsbuildError {
  override readonly code = 'DATA_LOSS';
}
/** The operation was aborted (Ctrl-C, an AbortSignal). */
export class CancelledError extends TsbuildError {
  override readonly code = 'CANCELLED';
}

export function isTsbuildError(e: unknown): e is TsbuildError {
  return e instanceof TsbuildError;
}
