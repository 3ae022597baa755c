/** Error types of the Herald SDK. */

/** The server's JSON error body: `{"error": {"code", "message"}}`. */
export interface HeraldErrorBody {
  error: { code: string; message: string; [key: string]: unknown };
}

/**
 * An error from the Herald HTTP API (publisher side), or a transport failure.
 * `status` is the HTTP status, or 0 when no response was received
 * (`code` is then `network_error`, `timeout` or `aborted`).
 */
export class HeraldError extends Error {
  override readonly name = 'HeraldError';
  readonly status: number;
  readonly code: string;
  /** Parsed `Retry-After` in ms, when the server sent one. */
  readonly retryAfterMs: number | undefined;
  /** The full parsed error body, when there was one. */
  readonly body: unknown;

  constructor(
    status: number,
    code: string,
    message: string,
    extra: { retryAfterMs?: number | undefined; body?: unknown; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.status = status;
    this.code = code;
    this.retryAfterMs = extra.retryAfterMs;
    this.body = extra.body;
  }
}

export type ConnectionErrorKind = 'network' | 'http' | 'liveness' | 'disconnected' | 'token';

/** An error observed on the SSE connection (reported via `onError` / `state.error`). */
export class HeraldConnectionError extends Error {
  override readonly name = 'HeraldConnectionError';
  readonly kind: ConnectionErrorKind;
  /** HTTP status when the EventSource implementation exposes it. */
  readonly status: number | undefined;
  /** `disconnected.reason` for kind `disconnected`. */
  readonly reason: string | undefined;

  constructor(kind: ConnectionErrorKind, message: string, extra: { status?: number; reason?: string; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.kind = kind;
    this.status = extra.status;
    this.reason = extra.reason;
  }
}
