/** `Retry-After` parsing, shared by the publisher and the subscriber. Pure logic. */

/** Parse `Retry-After` (delta-seconds or HTTP-date) into ms; `undefined` when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Alias of {@link parseRetryAfter}. */
export const parseRetryAfterMs = parseRetryAfter;
