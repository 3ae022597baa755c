/**
 * @herald/client/publisher: publish events to Herald from a backend (Node >= 20,
 * or any runtime with `fetch` and `AbortController`).
 *
 * ```ts
 * const herald = new HeraldPublisher({ url: 'http://127.0.0.1:8080', key: process.env.HERALD_KEY });
 * const { id, delivered } = await herald.notifyUser('alice', 'Your order shipped', 'notification', { orderId: 42 });
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
import { parseRetryAfter } from './retry-after.js';
import { joinUrl } from './url.js';

export { parseRetryAfter } from './retry-after.js';

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
  /** Seeds' name: every open connection (cluster-wide on Redis). Always set by `getStats()`. */
  totalConnections: number;
  /** Seeds' name: distinct users with an open connection (a user on two nodes counts once). Always set by `getStats()`. */
  uniqueUsers: number;
  [key: string]: unknown;
}

/** The seeds' event object: `{type, data}` (seed 001's `sendToUser(userId, event)`). */
export interface SeedEvent<T = unknown> {
  type: string;
  data?: T;
}

/** The event names of seed 002's domain helpers, each with the field its id goes under. */
export const ENTITY_ID_FIELDS = {
  payment: 'paymentId',
  job: 'jobType',
  account: 'userId',
  system_health: 'component',
  video_processing: 'videoId',
  data_export: 'exportId',
  post: 'postId',
  profile: 'userId',
} as const;

/** A domain helper's kind: its event name. */
export type EntityKind = keyof typeof ENTITY_ID_FIELDS;

/** Where a domain helper sends: seed 002's `targetType`. */
export type EntityTargetType = 'user' | 'users' | 'channel' | 'broadcast';

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * `{message, ...data}` for an object `data`, `{message}` without one (`undefined` or `null`),
 * else `{message, data}` (as the Rust `herald::helpers` and the Python SDK).
 */
export function messageData(message: string, data?: unknown): Record<string, unknown> {
  if (isPlainObject(data)) return { message, ...data };
  return data === undefined || data === null ? { message } : { message, data };
}

function entityTarget(targetType: EntityTargetType, targetId: string | readonly string[] | undefined): Partial<PublishBody> {
  const ids = (typeof targetId === 'string' ? targetId.split(',') : [...(targetId ?? [])]).map((s) => s.trim()).filter(Boolean);
  switch (targetType) {
    case 'broadcast':
      return { broadcast: true };
    case 'user':
    case 'users':
      if (!ids.length) throw new TypeError(`HeraldPublisher: targetType "${targetType}" needs a targetId`);
      if (targetType === 'user' && ids.length > 1) throw new TypeError('HeraldPublisher: targetType "user" takes one user id (use "users")');
      return { users: ids };
    case 'channel':
      if (ids.length !== 1) throw new TypeError('HeraldPublisher: targetType "channel" needs one channel name as targetId');
      return { channels: ids };
    default:
      throw new TypeError(`HeraldPublisher: unknown targetType ${JSON.stringify(targetType)} (user, users, channel or broadcast)`);
  }
}

/** Reads the two call forms `(event, data, options?)` and `({type, data}, options?)`. */
function seedForm(method: string, event: string | SeedEvent, rest: unknown[]): [string, unknown, PublishOptions | undefined] {
  if (typeof event === 'string') return [event, rest[0], rest[1] as PublishOptions | undefined];
  if (isPlainObject(event) && typeof event.type === 'string') return [event.type, event.data, rest[0] as PublishOptions | undefined];
  throw new TypeError(`HeraldPublisher.${method}: give (event, data) or ({type, data})`);
}

/** {@link HeraldStats} with the seeds' `totalConnections` and `uniqueUsers` filled in (see `getStats`). */
export function withSeedStats(raw: HeraldStats): HeraldStats {
  const stats = { ...raw } as HeraldStats;
  const cluster = isPlainObject(raw.cluster) ? raw.cluster : undefined;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  stats.totalConnections = num(raw.totalConnections) ?? num(cluster?.connections) ?? num(raw.connections) ?? 0;
  stats.uniqueUsers = num(raw.uniqueUsers) ?? num(cluster?.users) ?? num(raw.users) ?? 0;
  return stats;
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

  /**
   * `GET /api/sse/stats`, with the seeds' names added.
   *
   * Contract: the answer always has `totalConnections` (every open connection, of every
   * transport, on every node of a cluster) and `uniqueUsers` (distinct user ids with at least one
   * open connection: a user with tabs on two nodes counts once). A hub that sends these fields
   * itself is taken at its word (this release's hub does). From an older hub they are derived:
   * from its cluster block (`cluster.connections`, `cluster.users`) on Redis, else from
   * `connections` / `users`; there `cluster.users` is summed over nodes, so a user with tabs on
   * two nodes counts twice until the hub sends `uniqueUsers`.
   */
  async getStats(options?: RequestOptions): Promise<HeraldStats> {
    const raw = (await this.call<HeraldStats>(this.admin('GET', '/api/sse/stats', undefined), options, this.budget())).data;
    return withSeedStats(raw);
  }

  // ------------------------------------------------------------ helpers
  //
  // The seeds' helper functions, with the same names, argument orders and payloads as the
  // Rust `herald::helpers` and the Python SDK (issue 15's wire contract). Each resolves to the
  // hub's `{id, delivered}` (`delivered`: the connections it reached, the seeds' "count").

  /**
   * `sendToUser(userId, event, data)` (seed 002) or `sendToUser(userId, {type, data})`
   * (seed 001): event `event` (or `type`) with `data`, to every connection of one user.
   */
  sendToUser<T>(userId: string, event: string, data: T, options?: PublishOptions): Promise<PublishResult>;
  sendToUser<T>(userId: string, event: SeedEvent<T>, options?: PublishOptions): Promise<PublishResult>;
  sendToUser(userId: string, event: string | SeedEvent, ...rest: unknown[]): Promise<PublishResult> {
    const [name, data, options] = seedForm('sendToUser', event, rest);
    return this.publish({ event: name, data, users: [userId] }, options);
  }

  /**
   * `sendToConnection(connectionId, {type, data})` (seed 001) or
   * `sendToConnection(connectionId, event, data)`: to one connection (its `connectionId`, from
   * the `connected` event).
   */
  sendToConnection<T>(connectionId: string, event: string, data: T, options?: PublishOptions): Promise<PublishResult>;
  sendToConnection<T>(connectionId: string, event: SeedEvent<T>, options?: PublishOptions): Promise<PublishResult>;
  sendToConnection(connectionId: string, event: string | SeedEvent, ...rest: unknown[]): Promise<PublishResult> {
    const [name, data, options] = seedForm('sendToConnection', event, rest);
    return this.publish({ event: name, data, connections: [connectionId] }, options);
  }

  /** `sendToClient(clientId, event, data)` (seed 002): {@link sendToConnection} (a seed client id is a connection id). */
  sendToClient<T>(connectionId: string, event: string, data: T, options?: PublishOptions): Promise<PublishResult>;
  sendToClient<T>(connectionId: string, event: SeedEvent<T>, options?: PublishOptions): Promise<PublishResult>;
  sendToClient(connectionId: string, event: string | SeedEvent, ...rest: unknown[]): Promise<PublishResult> {
    const [name, data, options] = seedForm('sendToClient', event, rest);
    return this.publish({ event: name, data, connections: [connectionId] }, options);
  }

  /**
   * `sendToUsers(event, data, userIds)` (seed 003's order): `event` with `data` to every
   * connection of these users. The 0.1 order `(userIds, event, data)` is still accepted (an
   * array first) but deprecated.
   */
  sendToUsers<T>(event: string, data: T, userIds: readonly string[], options?: PublishOptions): Promise<PublishResult>;
  /** @deprecated The 0.1 order: use `sendToUsers(event, data, userIds)`. */
  sendToUsers<T>(userIds: readonly string[], event: string, data: T, options?: PublishOptions): Promise<PublishResult>;
  sendToUsers(a: string | readonly string[], b: unknown, c: unknown, options?: PublishOptions): Promise<PublishResult> {
    const [event, data, users] = Array.isArray(a) ? [b, c, a] : [a, b, c];
    if (typeof event !== 'string') throw new TypeError('HeraldPublisher.sendToUsers(event, data, userIds): event must be a string');
    if (!Array.isArray(users)) throw new TypeError('HeraldPublisher.sendToUsers(event, data, userIds): userIds must be an array');
    return this.publish({ event, data, users: [...(users as string[])] }, options);
  }

  /** Send `event` to every subscriber of a channel. */
  sendToChannel<T>(channel: string, event: string, data: T, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event, data, channels: [channel] }, options);
  }

  /**
   * `broadcastMessage(event, data)` (seed 003) or `broadcastMessage({type, data})` (seed 001's
   * `broadcast(event)`): `event` with `data` to every connection.
   */
  broadcastMessage<T>(event: string, data: T, options?: PublishOptions): Promise<PublishResult>;
  broadcastMessage<T>(event: SeedEvent<T>, options?: PublishOptions): Promise<PublishResult>;
  broadcastMessage(event: string | SeedEvent, ...rest: unknown[]): Promise<PublishResult> {
    const [name, data, options] = seedForm('broadcastMessage', event, rest);
    return this.publish({ event: name, data, broadcast: true }, options);
  }

  /**
   * `notifyUser(userId, message, type = 'notification', data?)` (seed 001): event `type`, data
   * `{message, ...data}` when `data` is an object, else `{message, data}` (`{message}` without
   * `data`).
   */
  notifyUser(userId: string, message: string, type: string = 'notification', data?: unknown, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event: type, data: messageData(message, data), users: [userId] }, options);
  }

  /** `notifyAll(message, type = 'notification', data?)` (seed 001): as {@link notifyUser}, to every connection. */
  notifyAll(message: string, type: string = 'notification', data?: unknown, options?: PublishOptions): Promise<PublishResult> {
    return this.publish({ event: type, data: messageData(message, data), broadcast: true }, options);
  }

  /** `sendAlert(userId, message, severity = 'info')`: event `alert` with data `{message, severity}`. */
  sendAlert(userId: string, message: string, severity: AlertSeverity = 'info', options?: PublishOptions): Promise<PublishResult> {
    return this.sendToUser(userId, 'alert', { message, severity }, options);
  }

  /** `sendUpdate(userId, updateType, payload)`: event `update` with data `{type, payload}`. */
  sendUpdate<T>(userId: string, updateType: string, payload: T, options?: PublishOptions): Promise<PublishResult> {
    return this.sendToUser(userId, 'update', { type: updateType, payload }, options);
  }

  /**
   * `sendNotification(userId, title, message, type = 'info')` (seed 003): event `notification`
   * with data `{title, message, type}`. (0.1 sent `{title, body, kind}`.)
   */
  sendNotification(userId: string, title: string, message: string, type: string = 'info', options?: PublishOptions): Promise<PublishResult> {
    return this.sendToUser(userId, 'notification', { title, message, type }, options);
  }

  /**
   * The generic form of seed 002's domain helpers: event `kind`, data `{<idField>: id, status,
   * ...data}` (the id field per kind in {@link ENTITY_ID_FIELDS}; `data` is an object, or
   * `undefined` / `null` for none), to `targetType` `user` (`targetId` a user id), `users` (an
   * array of user ids, or a comma-separated string), `channel` (a channel name) or `broadcast`
   * (no `targetId`).
   *
   * @throws TypeError for an unknown `kind` or `targetType`, a missing or extra `targetId`, or a
   * `data` that is not an object (as the Rust `send_entity_notification` refuses it).
   */
  sendEntityNotification(
    kind: EntityKind,
    id: string,
    status: string,
    data: unknown,
    targetType: EntityTargetType,
    targetId?: string | readonly string[],
    options?: PublishOptions,
  ): Promise<PublishResult> {
    const field = ENTITY_ID_FIELDS[kind];
    if (!field) throw new TypeError(`HeraldPublisher.sendEntityNotification: unknown kind ${JSON.stringify(kind)} (${Object.keys(ENTITY_ID_FIELDS).join(', ')})`);
    if (data !== undefined && data !== null && !isPlainObject(data)) {
      throw new TypeError('HeraldPublisher.sendEntityNotification: data is a JSON object (or undefined / null for none)');
    }
    const payload = { [field]: id, status, ...(data ?? {}) };
    return this.publish({ event: kind, data: payload, ...entityTarget(targetType, targetId) }, options);
  }

  /** Seed 002: event `payment`, data `{paymentId, status, ...data}`. */
  sendPaymentNotification(paymentId: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('payment', paymentId, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `job`, data `{jobType, status, ...data}`. */
  sendJobNotification(jobType: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('job', jobType, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `account`, data `{userId, status, ...data}`. */
  sendUserAccountNotification(userId: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('account', userId, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `system_health`, data `{component, status, ...data}`. */
  sendSystemHealthNotification(component: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('system_health', component, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `video_processing`, data `{videoId, status, ...data}`. */
  sendVideoProcessingNotification(videoId: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('video_processing', videoId, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `data_export`, data `{exportId, status, ...data}`. */
  sendDataExportNotification(exportId: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('data_export', exportId, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `post`, data `{postId, status, ...data}`. */
  sendPostUpdateNotification(postId: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('post', postId, status, data, targetType, targetId, options);
  }

  /** Seed 002: event `profile`, data `{userId, status, ...data}`. */
  sendProfileUpdateNotification(userId: string, status: string, data: unknown, targetType: EntityTargetType, targetId?: string | readonly string[], options?: PublishOptions): Promise<PublishResult> {
    return this.sendEntityNotification('profile', userId, status, data, targetType, targetId, options);
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
