import {
  DataLossError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
  type TsbuildError,
} from '@tsbuild/oci';

/**
 * What a registry said when it refused a request: the HTTP status and, when the body carried
 * one, the first distribution error (spec: "Error Codes", `{"errors":[{"code","message"}]}`).
 * Attached to every error this package throws for a registry answer, so a caller can branch on
 * `status` or `registryCode` without parsing messages.
 */
export interface RegistryErrorInfo {
  status: number;
  registryCode?: string;
  registryMessage?: string;
}

/** The status and registry error code of an error thrown for a registry answer, if it was one. */
export function registryErrorInfo(e: unknown): RegistryErrorInfo | undefined {
  if (typeof e !== 'object' || e === null || typeof (e as { status?: unknown }).status !== 'number') return undefined;
  return e as RegistryErrorInfo;
}

/** Parses a distribution error body; tolerant of anything else (HTML from a proxy, empty). */
export function parseErrorBody(body: string): { code?: string; message?: string } {
  try {
    const j = JSON.parse(body) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = Array.isArray(j.errors) ? j.errors[0] : undefined;
    if (first !== undefined) {
      return {
        ...(typeof first.code === 'string' ? { code: first.code } : {}),
        ...(typeof first.message === 'string' ? { message: first.message } : {}),
      };
    }
  } catch {
    // not JSON: fall through
  }
  return {};
}

/**
 * One line naming what was asked (`GET 127.0.0.1:5000/x manifest latest`), the status and the
 * registry's own code and message, mapped to the error kind a caller branches on:
 * 404 and *_UNKNOWN → NotFound; DIGEST_INVALID/SIZE_INVALID → DataLoss; 401/403 →
 * FailedPrecondition (log in, or ask for access); 400 MANIFEST_INVALID and friends →
 * InvalidArgument; 5xx and 429 → Unavailable. URLs in messages never carry query strings
 * (upload `_state` tokens) and credentials never reach this function.
 */
export function registryError(what: string, status: number, body: string): TsbuildError & RegistryErrorInfo {
  const parsed = parseErrorBody(body);
  const code = parsed.code !== undefined ? printable(parsed.code, 64) : undefined;
  const message = parsed.message !== undefined ? printable(parsed.message) : undefined;
  const said = code !== undefined ? `${code}${message !== undefined ? `: ${message}` : ''}` : statusText(status);
  let e: TsbuildError;
  const line = `${what}: ${status} ${said}`;
  if (status === 401) {
    e = new FailedPreconditionError(`${line} (authentication required: log in or pass credentials)`);
  } else if (status === 403) {
    e = new FailedPreconditionError(`${line} (access denied)`);
  } else if (status === 404 || (code !== undefined && /_UNKNOWN$/.test(code))) {
    e = new NotFoundError(line);
  } else if (code === 'DIGEST_INVALID' || code === 'SIZE_INVALID') {
    e = new DataLossError(line);
  } else if (status === 429 || status >= 500) {
    e = new UnavailableError(line);
  } else {
    e = new InvalidArgumentError(line);
  }
  return Object.assign(e, {
    status,
    ...(code !== undefined ? { registryCode: code } : {}),
    ...(message !== undefined ? { registryMessage: message } : {}),
  });
}

function statusText(status: number): string {
  const t: Record<number, string> = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not Found',
    405: 'Method Not Allowed',
    409: 'Conflict',
    416: 'Range Not Satisfiable',
    429: 'Too Many Requests',
    500: 'Internal Server Error',
    502: 'Bad Gateway',
    503: 'Service Unavailable',
    504: 'Gateway Timeout',
  };
  return t[status] ?? 'error';
}

/**
 * Text a server chose (an error message, a media type, a header) as it may appear in our
 * one-line messages: control characters, newlines included, become spaces, so that a registry
 * can neither break the line nor send escape sequences to the user's terminal; at most `max`
 * characters.
 */
export function printable(s: string, max = 300): string {
  const flat = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/** A URL as it may appear in a message: no user info, no query (upload state, signatures). */
export function redactUrl(u: URL | string): string {
  const url = new URL(String(u));
  return `${url.protocol}//${url.host}${url.pathname}`;
}
