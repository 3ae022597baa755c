/**
 * SSE over `fetch()` streaming: the default reader in browsers and Node wherever `fetch`
 * exposes a readable body (every current browser; Node >= 18).
 *
 * Why not the native `EventSource`: it cannot send headers (so no `Authorization`), and it
 * hides the HTTP status of a refused request, so a 401 looks like a network blip and is
 * retried forever. Here the client sees the status and the hub's JSON error
 * (`{"error": {"code", "message"}}`), stops on 401/403 with a typed error
 * ({@link HeraldAuthError}), and waits at least `Retry-After` after a 429/503.
 *
 * Why our own reader rather than `@microsoft/fetch-event-source`: that package owns the retry
 * loop (ours already does backoff, policy, resume and liveness), wires itself to
 * `document.visibilitychange` (closing and reopening the stream when a tab is hidden, which
 * would fight tab sharing), and is unmaintained since 2021; the part we need, a spec-following
 * parser ({@link SseParser}) and one `fetch`, is ~200 lines, unit-tested on its own and
 * against the hub.
 */
import type { StreamCallbacks, StreamDriver, StreamHandle } from './connection.js';
import { parseRetryAfterMs } from './retry-after.js';
import { deliverSse, SseParser } from './sse-parser.js';
import { buildSubscribeUrl, withEnvelope, type SubscribeUrlParams } from './url.js';

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface FetchStreamConfig {
  url: string;
  path: string;
  /** `fetch` to use; default the global one. */
  fetch?: FetchLike | undefined;
  /** Extra request headers (e.g. a session header); `Authorization` is set from the token. */
  headers?: Record<string, string> | undefined;
  /** `fetch`'s `credentials`: default `same-origin` (`include` with `eventSourceInit.withCredentials`). */
  credentials?: RequestCredentials | undefined;
  /** Ask for `envelope=1` and unwrap it (default true). */
  envelope?: boolean | undefined;
}

/** Whether this runtime can stream a fetch response body. */
export function canFetchStream(f: unknown = (globalThis as { fetch?: unknown }).fetch): boolean {
  const g = globalThis as { ReadableStream?: unknown; TextDecoder?: unknown; Response?: { prototype?: object } };
  return (
    typeof f === 'function' &&
    typeof g.ReadableStream === 'function' &&
    typeof g.TextDecoder === 'function' &&
    !!g.Response?.prototype &&
    'body' in g.Response.prototype
  );
}

/** Longest error body read from a refused subscribe. */
const MAX_ERROR_BODY = 16 * 1024;

/** The hub's `{"error": {"code", "message"}}`, when the body is one. */
function readErrorBody(text: string): { code?: string; message?: string } {
  try {
    const v = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof v?.error?.code === 'string' ? v.error.code : undefined;
    const message = typeof v?.error?.message === 'string' ? v.error.message : undefined;
    return { code, message };
  } catch {
    return {};
  }
}

/** The driver: one `fetch` per stream, parsed with {@link SseParser}. */
export class FetchSseDriver implements StreamDriver<FetchLike> {
  readonly kind = 'sse';
  readonly label = 'fetch';

  constructor(private readonly config: FetchStreamConfig) {}

  factory(): FetchLike {
    const f = this.config.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch');
    return f.bind(globalThis) as FetchLike;
  }

  connect(fetchFn: FetchLike, query: SubscribeUrlParams, _names: ReadonlySet<string>, cb: StreamCallbacks): StreamHandle {
    // The token goes in `Authorization`, not in the URL (where access logs would keep it).
    const { token, ...rest } = query;
    const envelope = this.config.envelope !== false;
    const url = buildSubscribeUrl(this.config.url, envelope ? withEnvelope(rest) : rest, this.config.path);
    const headers: Record<string, string> = { accept: 'text/event-stream', ...this.config.headers };
    if (token) headers.authorization = `Bearer ${token}`;
    const abort = new AbortController();
    let closed = false;
    const run = async () => {
      let response: Response;
      try {
        response = await fetchFn(url, {
          method: 'GET',
          headers,
          credentials: this.config.credentials ?? 'same-origin',
          cache: 'no-store',
          signal: abort.signal,
        });
      } catch (err) {
        if (!closed) cb.fail(undefined, err instanceof Error ? err.message : String(err));
        return;
      }
      if (!response.ok) {
        let text = '';
        try {
          text = (await response.text()).slice(0, MAX_ERROR_BODY);
        } catch {
          /* the status is what matters */
        }
        if (closed) return;
        const { code, message } = readErrorBody(text);
        const retryAfterMs = parseRetryAfterMs(response.headers.get('retry-after'));
        return cb.fail(response.status, message, { code, retryAfterMs });
      }
      const type = response.headers.get('content-type') ?? '';
      if (!/^text\/event-stream\b/i.test(type) || !response.body) {
        void response.body?.cancel().catch(() => {});
        if (!closed) cb.fail(response.status, `not an event stream (Content-Type: ${type || 'none'})`, { code: 'not_event_stream' });
        return;
      }
      cb.open();
      const parser = new SseParser();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (closed) return;
          if (done) break;
          const text = decoder.decode(value, { stream: true });
          if (!text) continue;
          const retryBefore = parser.retry;
          const events = parser.push(text);
          if (parser.retry !== undefined && parser.retry !== retryBefore) cb.retry?.(parser.retry);
          if (!events.length) {
            // Bytes but no complete event (a comment heartbeat, a partial frame): still alive.
            cb.alive(undefined);
            continue;
          }
          for (const ev of events) {
            if (closed) return;
            deliverSse(cb, envelope, ev.type, ev.data, ev.lastEventId || undefined);
          }
        }
      } catch (err) {
        if (!closed) cb.fail(undefined, err instanceof Error ? err.message : String(err));
        return;
      }
      if (!closed) cb.fail(undefined, 'the stream ended');
    };
    void run();
    return {
      listen: () => {}, // every event arrives
      close: () => {
        closed = true;
        abort.abort();
      },
    };
  }
}
