/** Error types of the Herald SDK. */

/** The server's JSON error body: `{"error": {"code", "message"}}`. */
export interface HeraldErrorBody {
  error: { code: string; message: string; [key: string]: unknown };
}

/**
 * Error codes of the Herald HTTP API and of the SDK's transport, as `HeraldError.code`.
 * The server may add codes; unknown ones still arrive as strings (`http_<status>` when the
 * error body was not Herald's JSON).
 */
export const HeraldErrorCodes = {
  // Transport (status 0: no response arrived)
  NetworkError: 'network_error',
  Timeout: 'timeout',
  Aborted: 'aborted',
  InvalidResponse: 'invalid_response',
  // 400
  InvalidJson: 'invalid_json',
  InvalidField: 'invalid_field',
  MissingTarget: 'missing_target',
  ConflictingTargets: 'conflicting_targets',
  ReservedEvent: 'reserved_event',
  BatchTooLarge: 'batch_too_large',
  // 401 / 403
  Unauthorized: 'unauthorized',
  InvalidToken: 'invalid_token',
  Forbidden: 'forbidden',
  OriginNotAllowed: 'origin_not_allowed',
  HostNotAllowed: 'host_not_allowed',
  // 408 / 413 / 422 / 429
  RequestTimeout: 'request_timeout',
  PayloadTooLarge: 'payload_too_large',
  IdempotencyKeyReused: 'idempotency_key_reused',
  RateLimited: 'rate_limited',
  // 503
  /** The hub's engine (e.g. Redis) is unavailable; nothing was sent. Safe to retry. */
  EngineUnavailable: 'engine_unavailable',
  /** The hub cannot tell whether the event was published. Retry only with the same idempotency key. */
  OutcomeUnknown: 'outcome_unknown',
  /** The hub is delivering a backlog; nothing was sent. */
  Overloaded: 'overloaded',
  /** The hub is shutting down; nothing was sent. */
  ShuttingDown: 'shutting_down',
} as const;

/** A known error code, or any other string the server sends. */
export type HeraldErrorCode = (typeof HeraldErrorCodes)[keyof typeof HeraldErrorCodes] | (string & {});

/**
 * An error from the Herald HTTP API (publisher side), or a transport failure.
 * `status` is the HTTP status, or 0 when no response was received
 * (`code` is then `network_error`, `timeout` or `aborted`).
 */
export class HeraldError extends Error {
  override readonly name: string = 'HeraldError';
  readonly status: number;
  readonly code: HeraldErrorCode;
  /** Parsed `Retry-After` in ms, when the server sent one. */
  readonly retryAfterMs: number | undefined;
  /** The full parsed error body, when there was one. */
  readonly body: unknown;
  /**
   * The idempotency key a single publish carried (undefined for batches and admin calls).
   * Resend the same event with this key within the hub's idempotency window and it is
   * published at most once.
   */
  readonly idempotencyKey: string | undefined;
  /**
   * For a failed `publishMany()` call: the idempotency key of each item, in order (undefined
   * for items without one). Resend the same items with these keys to publish each at most once.
   */
  idempotencyKeys: readonly (string | undefined)[] | undefined = undefined;
  /** How many attempts were made before giving up (1 = no retry). */
  attempts: number = 1;

  constructor(
    status: number,
    code: HeraldErrorCode,
    message: string,
    extra: { retryAfterMs?: number | undefined; body?: unknown; cause?: unknown; idempotencyKey?: string | undefined } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.status = status;
    this.code = code;
    this.retryAfterMs = extra.retryAfterMs;
    this.body = extra.body;
    this.idempotencyKey = extra.idempotencyKey;
  }
}

/**
 * A publish failed in a way that leaves its outcome unknown: the event may or may not have been
 * published (and delivered). Thrown for `503 outcome_unknown`, a timeout, a network error after
 * the request may have reached the hub, and 502/504 or 500 answers. `code` tells which.
 *
 * Resend it only with the same idempotency key (`err.idempotencyKey`, within the hub's
 * `--idempotency-window`): the hub then publishes it at most once. Without a key, resending may
 * deliver it twice.
 */
export class OutcomeUnknownError extends HeraldError {
  override readonly name: string = 'OutcomeUnknownError';
}

export type ConnectionErrorKind = 'network' | 'http' | 'liveness' | 'disconnected' | 'token';

/** An error observed on the SSE connection (reported via `onError` / `state.error`). */
export class HeraldConnectionError extends Error {
  override readonly name: string = 'HeraldConnectionError';
  readonly kind: ConnectionErrorKind;
  /** HTTP status when the stream implementation exposes it (the fetch reader always does). */
  readonly status: number | undefined;
  /** `disconnected.reason` for kind `disconnected`. */
  readonly reason: string | undefined;
  /** The hub's error code of a refused subscribe (`{"error": {"code"}}`), where it was readable (fetch reader). */
  readonly code: string | undefined;
  /** `Retry-After` of a refused subscribe (429, 503), in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(
    kind: ConnectionErrorKind,
    message: string,
    extra: { status?: number | undefined; reason?: string | undefined; code?: string | undefined; retryAfterMs?: number | undefined; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.kind = kind;
    this.status = extra.status;
    this.reason = extra.reason;
    this.code = extra.code;
    this.retryAfterMs = extra.retryAfterMs;
  }
}

/**
 * The hub refused the subscriber's credentials: HTTP 401 (`unauthorized`: no token, or a bad
 * one) or 403 (`forbidden`, `identity_not_allowed`, `channel_not_allowed`, `origin_not_allowed`…).
 * The client stops on it unless `token` is a function (it then reconnects with a fresh token).
 * Seen with the fetch reader (the default); a native EventSource cannot see statuses.
 */
export class HeraldAuthError extends HeraldConnectionError {
  override readonly name: string = 'HeraldAuthError';

  constructor(message: string, extra: { status: number; code?: string | undefined; retryAfterMs?: number | undefined }) {
    super('http', message, extra);
  }
}
