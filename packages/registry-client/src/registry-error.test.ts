import { describe, expect, it } from 'vitest';
import { DataLossError, FailedPreconditionError, NotFoundError, UnavailableError } from '@tsbuild/oci';
import { redactUrl, registryError } from './registry-error.js';
import { retryAfterMs } from './http-transport.js';
import { mapLimit } from './bounded-concurrency.js';

describe('registryError', () => {
  const body = (code: string, message: string) => JSON.stringify({ errors: [{ code, message, detail: {} }] });
  it('maps codes and statuses to error kinds, quoting the registry in one line', () => {
    const e = registryError('manifest r/x:v1', 404, body('MANIFEST_UNKNOWN', 'manifest unknown'));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toBe('manifest r/x:v1: 404 MANIFEST_UNKNOWN: manifest unknown');
    expect(e.registryCode).toBe('MANIFEST_UNKNOWN');
    expect(registryError('blob', 400, body('DIGEST_INVALID', 'provided digest did not match'))).toBeInstanceOf(DataLossError);
    expect(registryError('x', 401, '')).toBeInstanceOf(FailedPreconditionError);
    expect(registryError('x', 403, body('DENIED', 'requested access to the resource is denied')).message).toBe(
      'x: 403 DENIED: requested access to the resource is denied (access denied)',
    );
    expect(registryError('x', 503, '<html>busy</html>').message).toBe('x: 503 Service Unavailable');
    expect(registryError('x', 503, '')).toBeInstanceOf(UnavailableError);
  });
  it('drops query strings (upload state) and user info from URLs', () => {
    expect(redactUrl('http://u:p@h:5000/v2/a/blobs/uploads/x?_state=secret&digest=y')).toBe('http://h:5000/v2/a/blobs/uploads/x');
  });
});

describe('retryAfterMs', () => {
  it('reads seconds and HTTP dates, capped at a minute', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs('100000')).toBe(60_000);
    const ms = retryAfterMs(new Date(Date.now() + 5000).toUTCString())!;
    expect(ms).toBeGreaterThan(3000);
    expect(ms).toBeLessThanOrEqual(5000);
    expect(retryAfterMs(undefined)).toBeUndefined();
    expect(retryAfterMs('soon')).toBeUndefined();
  });
});

describe('mapLimit', () => {
  it('keeps at most `limit` calls in flight and returns results in order', async () => {
    let inFlight = 0;
    let peak = 0;
    const out = await mapLimit([5, 1, 4, 2, 3, 0], 3, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, n * 5));
      inFlight--;
      return n * 2;
    });
    expect(out).toEqual([10, 2, 8, 4, 6, 0]);
    expect(peak).toBe(3);
  });
  it('rejects with the first failure after the started calls settle', async () => {
    let settled = 0;
    await expect(
      mapLimit([1, 2, 3], 3, async (n) => {
        await new Promise((r) => setTimeout(r, n * 10));
        settled++;
        if (n === 1) throw new Error('first');
        return n;
      }),
    ).rejects.toThrow('first');
    expect(settled).toBe(3);
  });
});
