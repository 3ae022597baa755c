/**
 * @herald/client/publisher: publish events to Herald from a backend (Node >= 20,
 * or any runtime with `fetch` and `AbortController`).
 *
 * ```ts
 * const herald = new HeraldPublisher({ url: 'http://127.0.0.1:8080', key: process.env.HERALD_KEY });
 * const { id, delivered } = await herald.notifyUser('alice', 'notification', { title: 'Hi' });
 * ```
 *
 * Retry policy (see {@link isRetryable}): a publish is retried only when a retry cannot
 * deliver it twice.
 * - By default every publish (and every batch item) carries an idempotency key
 *   (`Idempotency-Key` header, `idempotencyKey` field in batch items; generated with
 *   `crypto.randomUUID()` unless the caller passes one). The hub publishes one key at most once
 *   within its `--idempotency-window` and answers a repeat with the first result. Keyed
 *   publishes are retried, with the same key, after any transient failure: network errors,
 *   timeouts, HTTP 429, 502, 503 (including `outcome_unknown`) and 504.
 * - Without a key (`idempotencyKeys: false` and no per-call key), only failures where nothing
 *   was sent for certain are retried: the connection could not be opened (refused, DNS),
 *   `429`, and `503` `engine_unavailable` / `overloaded` / `shutting_down`. Timeouts, other
 *   network errors, 502/504 and `503 outcome_unknown` are never retried: the event may have
 *   been published.
 * - Never retried: other 4xx (400, 401, 403, 413, 422 `idempotency_key_reused`...), 500,
 *   and a caller's abort.
 * - Admin calls (`disconnect`, `disconnectAll`, `getStats`) are idempotent and retried like
 *   keyed publishes.
 * - 429 and 503 honour `Retry-After`.
 *
 * A publish whose last failure leaves its outcome unknown rejects with an
 * {@link OutcomeUnknownError} (a {@link HeraldError}) that carries the idempotency key.
 */
import { Backoff, type BackoffOptions } from './backoff.js';
import { HeraldError, OutcomeUnknownError, type HeraldErrorCode } from './errors.js';
import { joinUrl } from './url.js';

export { HeraldError, HeraldErrorCodes, OutcomeUnknownError } from './errors.js';
export type { HeraldErrorBody, HeraldErrorCode } from './errors.js';

/** Body of `POST /api/sse/message`. */
export interface PublishBody<T = unknown> {
  /** Event name, `[A-Za-z0-9_.:-]{1,64}`. */
  event: string;
  /** Any JSON value, sent as its JSON encoding. Give exactly one of `data` and `text`. */
  data?: T;
  /** Raw text, delivered exactly as it is (`e.data` is the text, not a JSON string). */
  text?: string;
  users?: string[];
  connections?: string[];
  channels?: string[];
  /** Send to every connection; cannot be combined with other targets. */
  broadcast?: boolean;
  /** What to do when no target connection exists. */
  fallback?: 'none' | 'broadcast';
  /**
   * Idempotency key: 1 to 128 printable ASCII characters, no spaces. The hub publishes one key
   * at most once within its `--idempotency-window` (default 10 minutes); a repeat answers the
   * first result, a reuse with a different body `422 idempotency_key_reused`. When absent the
   * publisher generates one (option `idempotencyKeys`, default true). For {@link
   * HeraldPublisher.publish} it is sent as the `Idempotency-Key` header, in a batch as the
   * item's field.
   */
  idempotencyKey?: string;
}

/** Result of a successful publish. */
export interface PublishResult {
  /** The event id assigned by the server (opaque). */
  id: string;
  /** Number of connections the event was delivered to. */
  delivered: number;
  /**
   * `true` when the hub answered a repeat of an idempotency key with the first publish's result
   * (`Idempotent-Replayed: true`): this call did not publish again. Absent otherwise.
   */
  replayed?: true;
}

/** One failed item of a batch publish. */
export interface PublishItemError {
  error: { code: HeraldErrorCode; message: string };
  /** The item's idempotency key, to resend it later without a duplicate (set by the publisher). */
  idempotencyKey?: string;
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
  /**
   * Give every publish and batch item an idempotency key (`crypto.randomUUID()`) unless the
   * caller passes one, so that failed publishes can be retried without duplicates. Default true.
   * With false, only calls given a key are retried after an ambiguous failure (timeout,
   * `outcome_unknown`...); the others only when nothing was sent for certain.
   */
  idempotencyKeys?: boolean;
  /**
   * @deprecated Ignored. Timeouts are now retried exactly when the publish carries an
   * idempotency key (the default), which makes the retry safe; a publish without a key is never
   * retried after a timeout, since it could then be delivered twice.
   */
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

/** Per-call options of a single publish. */
export interface PublishOptions extends RequestOptions {
  /** The idempotency key of this publish (wins over `body.idempotencyKey` and the generated one). */
  idempotencyKey?: string;
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

/** 503 codes after which the hub sent nothing for certain. */
const NOT_SENT_503 = new Set<string>(['engine_unavailable', 'overloaded', 'shutting_down', 'too_many_connections']);

/** Error codes of the transport layer (`cause.code`) that mean the connection was never opened. */
const CONNECT_FAILURES = new Set<string>([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Whether `err` (a fetch rejection, or a HeraldError wrapping one) failed to open a connection. */
export function isConnectFailure(err: unknown): boolean {
  const seen = new Set<unknown>();
  const stack: unknown[] = [err];
  while (stack.length) {
    const e = stack.pop();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_FAILURES.has(code)) return true;
    stack.push((e as { cause?: unknown }).cause);
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors)) stack.push(...errors);
  }
  return false;
}

/**
 * Whether a failed request certainly had no effect on the hub: the connection could not be
 * opened, or the hub refused it before acting (4xx, and 503 `engine_unavailable`, `overloaded`,
 * `shutting_down`). False when it may have been applied: timeouts, other network errors, 5xx
 * other than those (`503 outcome_unknown`, 500, 502, 504), an unreadable answer, an abort.
 */
export function isNotApplied(err: HeraldError): boolean {
  if (err.status === 0) return err.code === 'network_error' && isConnectFailure(err);
  if (err.status >= 400 && err.status < 500) return true;
  if (err.status === 503) return NOT_SENT_503.has(err.code);
  return false;
}

/**
 * Which failures may be retried. `idempotent`: the request may be repeated without effect
 * (a publish with an idempotency key, an admin call); then any transient failure is retried
 * (network errors, timeouts, 429, 502, 503, 504). Otherwise only failures where nothing was
 * sent for certain (connection refused, 429, 503 `engine_unavailable`/`overloaded`/`shutting_down`).
 * A caller's abort, invalid answers and other statuses are never retried.
 *
 * (`retryOnTimeout`, the former second option, is deprecated and ignored.)
 */
export function isRetryable(
  err: HeraldError,
  opts: { idempotent?: boolean | undefined; /** @deprecated ignored */ retryOnTimeout?: boolean | undefined } = {},
): boolean {
  const idempotent = !!opts.idempotent;
  if (err.status === 0) {
    if (err.code === 'network_error') return idempotent || isConnectFailure(err);
    if (err.code === 'timeout') return idempotent;
    return false; // aborted by the caller, invalid response
  }
  if (err.code === 'invalid_response') return false;
  if (err.status === 429) return true;
  if (err.status === 503) return idempotent || NOT_SENT_503.has(err.code);
  if (err.status === 502 || err.status === 504) return idempotent;
  return false;
}

/** Codes of failed batch items worth resending: nothing was sent (or, with a key, any doubt). */
const ITEM_NOT_SENT = new Set<string>(['engine_unavailable', 'overloaded', 'shutting_down', 'rate_limited']);

/** A fresh idempotency key (a random UUID). */
export function newIdempotencyKey(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  if (c && typeof c.getRandomValues === 'function') {
    const b = c.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  throw new TypeError('HeraldPublisher: no crypto.randomUUID; pass idempotencyKey per call or idempotencyKeys: false');
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


/** How one HTTP call is made and retried. */
interface CallSpec {
  method: 'GET' | 'POST';
  path: string;
  body: unknown;
  /** Safe to repeat (admin call, or publish with an idempotency key). */
  idempotent: boolean;
  /** A publish: an ambiguous failure becomes an {@link OutcomeUnknownError}. */
  publish: boolean;
  /** The key of a single publish (sent as `Idempotency-Key`). */
  idempotencyKey?: string | undefined;
}

interface Answer<T> {
  data: T;
  headers: Headers;
}

/** Retries left for one call (shared by a batch's request and item retries). */
interface Budget {
  left: number;
  attempts: number;
  backoff: Backoff;
}

export class HeraldPublisher {
  readonly url: string;
  private readonly key: string | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryBackoff: BackoffOptions;
  private readonly maxRetryAfterMs: number;
  private readonly idempotencyKeys: boolean;
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
    this.idempotencyKeys = options.idempotencyKeys ?? true;
    const f = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (typeof f !== 'function') throw new TypeError('HeraldPublisher: no global fetch; pass the `fetch` option');
    this.fetchImpl = f;
    this.extraHeaders = { ...options.headers };
  }

  // ------------------------------------------------------------ raw API

  /**
   * `POST /api/sse/message`. The idempotency key (`options.idempotencyKey`, else
   * `body.idempotencyKey`, else a generated one unless `idempotencyKeys` is off) goes in the
   * `Idempotency-Key` header.
   */
  async publish<T = unknown>(body: PublishBody<T>, options: PublishOptions = {}): Promise<PublishResult> {
    const { idempotencyKey: bodyKey, ...rest } = body;
    const key = options.idempotencyKey ?? bodyKey ?? (this.idempotencyKeys ? newIdempotencyKey() : undefined);
    const budget = this.budget();
    const { data, headers } = await this.call<PublishResult>(
      { method: 'POST', path: '/api/sse/message', body: rest, idempotent: key !== undefined, publish: true, idempotencyKey: key },
      options,
      budget,
    );
    if (headers.get('idempotent-replayed')?.trim().toLowerCase() === 'true' && data && typeof data === 'object') {
      return { ...data, replayed: true };
    }
    return data;
  }

  /**
   * `POST /api/sse/messages`: one result per body, failed items carry `{error}` (see
   * {@link isPublishItemError}). Each item carries its idempotency key (its own, else a
   * generated one unless `idempotencyKeys` is off). Items that failed because nothing was sent
   * (`engine_unavailable`, `overloaded`, `shutting_down`, `rate_limited`), or with a key because
   * of `outcome_unknown`, are resent (same keys) within the `retries` budget; the others are
   * returned as they are.
   */
  async publishMany(bodies: PublishBody[], options: RequestOptions = {}): Promise<BatchResult> {
    const items = bodies.map((b) =>
      b.idempotencyKey === undefined && this.idempotencyKeys ? { ...b, idempotencyKey: newIdempotencyKey() } : { ...b },
    );
    const results: BatchItemResult[] = new Array(items.length);
    let pending = items.map((_, i) => i);
    const budget = this.budget();
    for (;;) {
      const sent = pending.map((i) => items[i]!);
      const idempotent = sent.every((b) => typeof b.idempotencyKey === 'string');
      let data: BatchResult;
      try {
        ({ data } = await this.call<BatchResult>(
          { method: 'POST', path: '/api/sse/messages', body: sent, idempotent, publish: true },
          options,
          budget,
        ));
      } catch (e) {
        const err = e as HeraldError;
        if (pending.length === items.length) {
          // Nothing came back yet: the whole call failed. The keys let the caller resend as is.
          err.idempotencyKeys = items.map((b) => b.idempotencyKey);
          throw err;
        }
        // A resend failed: the earlier items' results stand; the resent ones get this error.
        for (const i of pending) {
          const key = items[i]!.idempotencyKey;
          const r: PublishItemError = { error: { code: err.code, message: err.message } };
          results[i] = key === undefined ? r : { ...r, idempotencyKey: key };
        }
        return { results };
      }
      const got = (data as { results?: unknown } | undefined)?.results;
      if (!Array.isArray(got) || got.length !== sent.length) {
        const err = new OutcomeUnknownError(
          200,
          'invalid_response',
          `batch answer has ${Array.isArray(got) ? got.length : 'no'} results for ${sent.length} events`,
          { body: data },
        );
        err.attempts = budget.attempts;
        err.idempotencyKeys = items.map((b) => b.idempotencyKey);
        throw err;
      }
      const retry: number[] = [];
      got.forEach((r: BatchItemResult, j) => {
        const i = pending[j]!;
        const key = items[i]!.idempotencyKey;
        if (isPublishItemError(r)) {
          const code = r.error.code;
          if (ITEM_NOT_SENT.has(code) || (key !== undefined && code === 'outcome_unknown')) retry.push(i);
          results[i] = key === undefined ? r : { ...r, idempotencyKey: key };
        } else {
          results[i] = r;
        }
      });
      if (retry.length === 0 || budget.left <= 0) return { results };
      budget.left--;
      budget.attempts++;
      await this.pause(budget.backoff.next(), options.signal);
      pending = retry;
    }
  }

  /** `POST /api/sse/disconnect`: end the streams of these users/connections. */
  async disconnect(target: { users?: string[]; connections?: string[] }, options?: RequestOptions): Promise<DisconnectResult> {
    return (await this.call<DisconnectResult>(this.admin('POST', '/api/sse/disconnect', target), options, this.budget())).data;
  }

  /** `POST /api/sse/disconnect-all`. */
  async disconnectAll(options?: RequestOptions): Promise<DisconnectResult> {
    return (await this.call<DisconnectResult>(this.admin('POST', '/api/sse/disconnect-all', {}), options, this.budget())).data;
  }

  /** `GET /api/sse/stats`. */
  async getStats(options?: RequestOptions): Promise<HeraldStats> {
    return (await this.call<HeraldStats>(this.admin('GET', '/api/sse/stats', undefined), options, this.budget())).data;
  }

  // ------------------------------------------------------------ helpers

  /** Send `event` to every connection of one user. */
  notifyUser<T>(userId: string, event: string, data: T, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event, data, users: [userId] }, options);
  }

  /** Send `event` to every connection of these users. */
  sendToUsers<T>(userIds: string[], event: string, data: T, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event, data, users: [...userIds] }, options);
  }

  /** Send `event` to every subscriber of a channel. */
  sendToChannel<T>(channel: string, event: string, data: T, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event, data, channels: [channel] }, options);
  }

  /** Broadcast `event` to every connection. */
  notifyAll<T>(event: string, data: T, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event, data, broadcast: true }, options);
  }

  /** Alias of {@link notifyAll}. */
  broadcastMessage<T>(event: string, data: T, options?: PublishOptions): Promise<PublishResult> {
    return this.notifyAll(event, data, options);
  }

  /** Event `alert` with data `{message, severity}`. */
  sendAlert(userId: string, message: string, severity: AlertSeverity = 'info', options?: PublishOptions): Promise<PublishResult> {
    return this.notifyUser(userId, 'alert', { message, severity }, options);
  }

  /** Event `update` with data `{type, payload}`. */
  sendUpdate<T>(userId: string, updateType: string, payload: T, options?: PublishOptions): Promise<PublishResult> {
    return this.notifyUser(userId, 'update', { type: updateType, payload }, options);
  }

  /** Event `notification` with data `{title, body, kind}`. */
  sendNotification(
    userId: string,
    title: string,
    body: string,
    kind: string = 'info',
    options?: PublishOptions,
  ): Promise<PublishResult> {
    return this.notifyUser(userId, 'notification', { title, body, kind }, options);
  }

  // ------------------------------------------------------------ transport

  private endpoint(path: string): string {
    const { url, query } = joinUrl(this.url, path);
    return query ? `${url}?${query}` : url;
  }

  private admin(method: 'GET' | 'POST', path: string, body: unknown): CallSpec {
    return { method, path, body, idempotent: true, publish: false };
  }

  private budget(): Budget {
    return { left: this.retries, attempts: 0, backoff: new Backoff(this.retryBackoff) };
  }

  private async pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
    try {
      await sleep(ms, signal);
    } catch (abortErr) {
      throw new HeraldError(0, 'aborted', 'request aborted', { cause: abortErr });
    }
  }

  /** One call with its retries; the final error says how many attempts were made. */
  private async call<T>(spec: CallSpec, options: RequestOptions = {}, budget: Budget): Promise<Answer<T>> {
    for (;;) {
      budget.attempts++;
      try {
        return await this.attempt<T>(spec, options);
      } catch (e) {
        let err = e instanceof HeraldError ? e : new HeraldError(0, 'network_error', String(e), { cause: e });
        if (spec.publish && !(err instanceof OutcomeUnknownError) && !isNotApplied(err) && err.code !== 'aborted') {
          err = asOutcomeUnknown(err, spec.idempotencyKey);
        }
        err.attempts = budget.attempts;
        if (budget.left <= 0 || !isRetryable(err, { idempotent: spec.idempotent })) throw err;
        let delay = budget.backoff.next();
        if (err.retryAfterMs !== undefined) {
          if (err.retryAfterMs > this.maxRetryAfterMs) throw err;
          delay = Math.max(delay, err.retryAfterMs);
        }
        budget.left--;
        try {
          await this.pause(delay, options.signal);
        } catch (abort) {
          (abort as HeraldError).attempts = budget.attempts;
          throw abort;
        }
      }
    }
  }

  private async attempt<T>(spec: CallSpec, options: RequestOptions): Promise<Answer<T>> {
    const { method, path, body } = spec;
    const idempotencyKey = spec.idempotencyKey;
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
    if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
    const extra = { idempotencyKey };

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
        if (timedOut) throw new HeraldError(0, 'timeout', `request timed out after ${timeoutMs} ms`, { cause: err, ...extra });
        if (outer?.aborted) throw new HeraldError(0, 'aborted', 'request aborted', { cause: err, ...extra });
        throw new HeraldError(0, 'network_error', `network error: ${describe(err)}`, { cause: err, ...extra });
      }
      let text: string;
      try {
        text = await res.text();
      } catch (err) {
        if (timedOut) throw new HeraldError(0, 'timeout', `request timed out after ${timeoutMs} ms`, { cause: err, ...extra });
        if (outer?.aborted) throw new HeraldError(0, 'aborted', 'request aborted', { cause: err, ...extra });
        // A response status arrived: the request was processed. Not retryable.
        throw new HeraldError(res.status, 'invalid_response', `failed to read the response body: ${describe(err)}`, {
          cause: err,
          ...extra,
        });
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
        throw new HeraldError(res.status, code, message, { retryAfterMs, body: json ?? text, ...extra });
      }
      if (json === undefined && text) {
        throw new HeraldError(res.status, 'invalid_response', 'response is not JSON', { body: text, ...extra });
      }
      return { data: json as T, headers: res.headers };
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
    }
  }
}

/** The same failure as an {@link OutcomeUnknownError}. */
function asOutcomeUnknown(err: HeraldError, idempotencyKey: string | undefined): OutcomeUnknownError {
  const out = new OutcomeUnknownError(err.status, err.code, err.message, {
    retryAfterMs: err.retryAfterMs,
    body: err.body,
    cause: err.cause,
    idempotencyKey: err.idempotencyKey ?? idempotencyKey,
  });
  out.attempts = err.attempts;
  return out;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const code = cause && typeof cause.code === 'string' ? ` (${cause.code})` : '';
    return `${err.message}${code}`;
  }
  return String(err);
}
