/**
 * `ms` (default: now) as Date.prototype.toISOString writes it, `YYYY-MM-DDTHH:mm:ss.sssZ`: the
 * RFC 3339 form of image configs, history entries and records. toISOString's first call sets up
 * ICU's time zones (it reads /etc/localtime), ~0.8 ms of a short command here, for a form that
 * needs none; the UTC getters do not. Years outside 0–9999 (and an invalid time) go to
 * toISOString, for its extended years and its RangeError.
 */
export function isoTime(ms: number = Date.now()): string {
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return d.toISOString();
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  return `${pad(year, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}
