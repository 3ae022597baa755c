/**
 * @herald/client/publisher: publish events to Herald from a backend (Node >= 20,
 * or any runtime with `fetch` and `AbortController`).
 *
 * ```ts
 * const herald = new HeraldPublisher({ url: 'http://127.0.0.1:8080', key: process.env.HERALD_KEY });
 * const { id, delivered } = await herald.notifyUser('alice', 'notification', { title: 'Hi' });
 * ```
 *
 * Retry policy (see {@link isRetryable}):
 * - retried, with exponential backoff + full jitter: network errors where no
 *   response arrived, HTTP 502, 503 and 429 (429/503 honour `Retry-After`);
 * - never retried: any other 4xx, 500, 504 and other statuses;
 * - timeouts are NOT retried by default. Publishing is not idempotent: when a
 *   request times out the server may still have accepted (and delivered) the
 *   event, so retrying could deliver it twice. Opt in with `retryOnTimeout`.
 *   (The same caveat applies in theory to a connection reset after the body was
 *   sent; such errors are indistinguishable from "never reached the server" and
 *   are retried as network errors.)
 */
import { Backoff, type BackoffOptions } from './backoff.js';
import { HeraldError } from './errors.js';
import { joinUrl } from './url.js';

export { HeraldError } from './errors.js';
export type { HeraldErrorBody } from './errors.js';

/** Body of `POST /api/sse/message`. */
export interface PublishBody<T = unknown> {
  /** Event name, `[A-Za-z0-9_.:-]{1,64}`. */
  event: string;
  /** Any JSON value. */
  data: T;
  users?: string[];
  connections?: string[];
  channels?: string[];
  /** Send to every connection; cannot be combined with other targets. */
  broadcast?: boolean;
  /** What to do when no target connection exists. */
  fallback?: 'none' | 'broadcast';
}

/** Result of a successful publish. */
export interface PublishResult {
  /** The event id assigned by the server (opaque). */
  id: string;
  /** Number of connections the event was delivered to. */
  delivered: number;
}

/** One failed item of a batch publish. */
export interface PublishItemError {
  error: { code: string; message: string };
}

export type BatchItemResult = PublishResult | PublishItemError;

export interface BatchResult {
  results: BatchItemResult[];
}

export interface DisconnectResult {
  disconnected: number;
}

export interface HeraldStats {
  connections: number;
  users: number;
  anonymousConnections: number;
  channels: Record<string, number>;
  eventsPublished: number;
  eventsDelivered: number;
  evictedSlowConsumers: number;
  uptimeSeconds: number;
  [key: string]: unknown;
}

export type AlertSeverity = 'info' | 'success' | 'warning' | 'error' | 'critical' | (string & {});

export interface HeraldPublisherOptions {
  /** Base URL of the Herald server, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Publisher key, sent as `Authorization: Bearer <key>` when set. */
  key?: string | undefined;
  /** Per-attempt timeout in ms. Default 10000. 0 disables. */
  timeoutMs?: number;
  /** Retries after the first attempt for retryable failures. Default 2. */
  retries?: number;
  /** Delay between retries (`Retry-After` wins when larger). Default `{initialDelay: 200, maxDelay: 5000, multiplier: 2, jitter: 1}`. */
  retryBackoff?: BackoffOptions;
  /** Longest `Retry-After` (ms) we are willing to wait; a longer one fails at once. Default 60000. */
  maxRetryAfterMs?: number;
  /** Also retry timed-out requests (may duplicate events; see the module doc). Default false. */
  retryOnTimeout?: boolean;
  /** fetch implementation. Default the global `fetch`. */
  fetch?: typeof fetch;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
}

/** Per-call options. */
export interface RequestOptions {
  /** Abort this call (no retry after an abort). */
  signal?: AbortSignal;
  /** Override the per-attempt timeout for this call. */
  timeoutMs?: number;
}

/** Type guard for failed batch items. */
export function isPublishItemError(r: BatchItemResult): r is PublishItemError {
  return !!r && typeof r === 'object' && 'error' in r && !!(r as PublishItemError).error;
}

/** Parse `Retry-After` (delta-seconds or HTTP-date) into ms. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Which failures may be retried (timeouts only with `retryOnTimeout`). */
export function isRetryable(err: HeraldError, opts: { retryOnTimeout?: boolean | undefined } = {}): boolean {
  if (err.status === 0) {
    if (err.code === 'network_error') return true;
    if (err.code === 'timeout') return !!opts.retryOnTimeout;
    return false; // aborted by the caller
  }
  return err.status === 429 || err.status === 502 || err.status === 503;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class HeraldPublisher {
  readonly url: string;
  private readonly key: string | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryBackoff: BackoffOptions;
  private readonly maxRetryAfterMs: number;
  private readonly retryOnTimeout: boolean;
  private readonly fetchImpl: typeof fetch;
  private readonly extraHeaders: Record<string, string>;

  constructor(options: HeraldPublisherOptions) {
    if (!options || typeof options.url !== 'string' || !options.url) throw new TypeError('HeraldPublisher: `url` is required');
    this.url = options.url;
    this.key = options.key || undefined;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = Math.max(0, Math.floor(options.retries ?? 2));
    this.retryBackoff = { initialDelay: 200, maxDelay: 5000, multiplier: 2, jitter: 1, ...options.retryBackoff };
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 60_000;
    this.retryOnTimeout = options.retryOnTimeout ?? false;
    const f = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (typeof f !== 'function') throw new TypeError('HeraldPublisher: no global fetch; pass the `fetch` option');
    this.fetchImpl = f;
    this.extraHeaders = { ...options.headers };
  }

  // ------------------------------------------------------------ raw API

  /** `POST /api/sse/message`. */
  publish<T = unknown>(body: PublishBody<T>, options?: RequestOptions): Promise<PublishResult> {
    return this.request<PublishResult>('POST', '/api/sse/message', body, options);
  }

  /** `POST /api/sse/messages`: one result per body, failed items carry `{error}` (see {@link isPublishItemError}). */
  publishMany(bodies: PublishBody[], options?: RequestOptions): Promise<BatchResult> {
    return this.request<BatchResult>('POST', '/api/sse/messages', bodies, options);
  }

  /** `POST /api/sse/disconnect`: end the streams of these users/connections. */
  disconnect(target: { users?: string[]; connections?: string[] }, options?: RequestOptions): Promise<DisconnectResult> {
    return this.request<DisconnectResult>('POST', '/api/sse/disconnect', target, options);
  }

  /** `POST /api/sse/disconnect-all`. */
  disconnectAll(options?: RequestOptions): Promise<DisconnectResult> {
    return this.request<DisconnectResult>('POST', '/api/sse/disconnect-all', {}, options);
  }

  /** `GET /api/sse/stats`. */
  getStats(options?: RequestOptions): Promise<HeraldStats> {
    return this.request<HeraldStats>('GET', '/api/sse/stats', undefined, options);
  }

  // ------------------------------------------------------------ helpers

  /** Send `event` to every connection of one user. */
  notifyUser<T>(userId: string, event: string, data: T, options?: RequestOptions): Promise<PublishResult> {
    return this.publish({ event, data, users: [userId] }, options);
  }

  /** Send `event` to every connection of these users. */
  sendToUsers<T>(userIds: string[], event: string, data: T, options?: RequestOptions): Promise<PublishResult> {
    return this.publish({ event, data, users: [...userIds] }, options);
  }

  /** Send `event` to every subscriber of a channel. */
  sendToChannel<T>(channel: string, event: string, data: T, options?: RequestOptions): Promise<PublishResult> {
    return this.publish({ event, data, channels: [channel] }, options);
  }

  /** Broadcast `event` to every connection. */
  notifyAll<T>(event: string, data: T, options?: RequestOptions): Promise<PublishResult> {
    return this.publish({ event, data, broadcast: true }, options);
  }

  /** Alias of {@link notifyAll}. */
  broadcastMessage<T>(event: string, data: T, options?: RequestOptions): Promise<PublishResult> {
    return this.notifyAll(event, data, options);
  }

  /** Event `alert` with data `{message, severity}`. */
  sendAlert(userId: string, message: string, severity: AlertSeverity = 'info', options?: RequestOptions): Promise<PublishResult> {
    return this.notifyUser(userId, 'alert', { message, severity }, options);
  }

  /** Event `update` with data `{type, payload}`. */
  sendUpdate<T>(userId: string, updateType: string, payload: T, options?: RequestOptions): Promise<PublishResult> {
    return this.notifyUser(userId, 'update', { type: updateType, payload }, options);
  }

  /** Event `notification` with data `{title, body, kind}`. */
  sendNotification(
    userId: string,
    title: string,
    body: string,
    kind: string = 'info',
    options?: RequestOptions,
  ): Promise<PublishResult> {
    return this.notifyUser(userId, 'notification', { title, body, kind }, options);
  }

  // ------------------------------------------------------------ transport

  private endpoint(path: string): string {
    const { url, query } = joinUrl(this.url, path);
    return query ? `${url}?${query}` : url;
  }

  private async request<T>(method: 'GET' | 'POST', path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    const backoff = new Backoff(this.retryBackoff);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt<T>(method, path, body, options);
      } catch (e) {
        const err = e instanceof HeraldError ? e : new HeraldError(0, 'network_error', String(e), { cause: e });
        if (attempt >= this.retries || !isRetryable(err, { retryOnTimeout: this.retryOnTimeout })) throw err;
        let delay = backoff.next();
        if (err.retryAfterMs !== undefined) {
          if (err.retryAfterMs > this.maxRetryAfterMs) throw err;
          delay = Math.max(delay, err.retryAfterMs);
        }
        try {
          await sleep(delay, options.signal);
        } catch (abortErr) {
          throw new HeraldError(0, 'aborted', 'request aborted', { cause: abortErr });
        }
      }
    }
  }

  private async attempt<T>(method: 'GET' | 'POST', path: string, body: unknown, options: RequestOptions): Promise<T> {
    const controller = new AbortController();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    let timedOut = false;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            controller.abort();
          }, timeoutMs)
        : undefined;
    const outer = options.signal;
    const onOuterAbort = () => controller.abort(outer?.reason);
    if (outer) {
      if (outer.aborted) controller.abort(outer.reason);
      else outer.addEventListener('abort', onOuterAbort, { once: true });
    }

    const headers: Record<string, string> = { accept: 'application/json', ...this.extraHeaders };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.key) headers['authorization'] = `Bearer ${this.key}`;

    try {
      let res: Response;
      try {
        res = await this.fetchImpl(this.endpoint(path), {
          method,
          headers,
          body: body === undefined ? null : JSON.stringify(body),
          signal: controller.signal,
        });
      } catch (err) {
        if (timedOut) throw new HeraldError(0, 'timeout', `request timed out after ${timeoutMs} ms`, { cause: err });
        if (outer?.aborted) throw new HeraldError(0, 'aborted', 'request aborted', { cause: err });
        throw new HeraldError(0, 'network_error', `network error: ${describe(err)}`, { cause: err });
      }
      let text: string;
      try {
        text = await res.text();
      } catch (err) {
        if (timedOut) throw new HeraldError(0, 'timeout', `request timed out after ${timeoutMs} ms`, { cause: err });
        if (outer?.aborted) throw new HeraldError(0, 'aborted', 'request aborted', { cause: err });
        // A response status arrived: the request was processed. Not retryable.
        throw new HeraldError(res.status, 'invalid_response', `failed to read the response body: ${describe(err)}`, { cause: err });
      }
      let json: unknown = undefined;
      if (text) {
        try {
          json = JSON.parse(text);
        } catch {
          /* non-JSON body */
        }
      }
      if (!res.ok) {
        const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
        const e = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
        const code = typeof e?.code === 'string' ? e.code : `http_${res.status}`;
        const message = typeof e?.message === 'string' ? e.message : text.slice(0, 500) || res.statusText || `HTTP ${res.status}`;
        throw new HeraldError(res.status, code, message, { retryAfterMs, body: json ?? text });
      }
      if (json === undefined && text) {
        throw new HeraldError(res.status, 'invalid_response', 'response is not JSON', { body: text });
      }
      return json as T;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const code = cause && typeof cause.code === 'string' ? ` (${cause.code})` : '';
    return `${err.message}${code}`;
  }
  return String(err);
}
