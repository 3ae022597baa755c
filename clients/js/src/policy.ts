/**
 * The reconnect policy, in one place. Pure logic.
 *
 * What the client does when a stream ends:
 *
 * | trigger                                      | action                                              |
 * | -------------------------------------------- | --------------------------------------------------- |
 * | user called `close()`                        | stop (status `closed`, reason `client_close`)       |
 * | network error / stream ended without notice  | reconnect with backoff                              |
 * | liveness timeout (no event nor heartbeat)    | reconnect with backoff                              |
 * | `disconnected` with `reconnect: "now"`       | reconnect at once (no backoff delay)                |
 * | `disconnected` with `reconnect: "backoff"`   | reconnect with backoff (on `server_shutdown`, full  |
 * |                                              | jitter spreads the herd over the restart; the       |
 * |                                              | attempt counter keeps growing while it is down)     |
 * | `disconnected` with `reconnect: "new_token"` | reconnect with backoff if `token` is a function (it |
 * |                                              | is called again for a fresh token), otherwise stop  |
 * | `disconnected` with `reconnect: "no"`        | stop                                                |
 * | `disconnected` with an unknown `reconnect`   | reconnect with backoff                              |
 * | `disconnected` without `reconnect` (a hub    | by `reason`: `token_expired`, `token_invalid`,      |
 * | older than the field)                        | `token_revoked` as `new_token`; `unauthorized`,     |
 * |                                              | `forbidden` as `no`; anything else as `backoff`     |
 * | HTTP 401 / 403 on connect (when visible)     | reconnect if the token is refreshable, else stop    |
 * | HTTP 400 on connect (when visible)           | stop: the request itself is wrong                   |
 * | other HTTP errors (429, 5xx, 404...)         | reconnect with backoff                              |
 *
 * Every reconnect passes the last seen event id as `lastEventId`, so the server
 * can replay what was missed (or send `reset` when it cannot).
 * The backoff attempt counter resets once an event arrives on a new stream.
 * The whole table can be overridden with the `disconnectPolicy` option.
 * Native browser EventSource does not expose HTTP status codes, so the HTTP rows
 * only apply with EventSource implementations that report `code` on errors
 * (e.g. the `eventsource` npm package in Node).
 */
import type { DisconnectedData } from './types.js';

export type PolicyAction = 'reconnect' | 'stop';

export interface PolicyContext {
  /** True when the client can obtain a new token (the `token` option is a function). */
  canRefreshToken: boolean;
}

/** Reasons that mean "don't come back" unless the token can be refreshed (for a hub that sends no
 * `reconnect` advice). */
export const TOKEN_REASONS: ReadonlySet<string> = new Set(['token_expired', 'token_invalid', 'token_revoked']);

/** Reasons that always mean "don't come back" (for a hub that sends no `reconnect` advice). */
export const STOP_REASONS: ReadonlySet<string> = new Set(['unauthorized', 'forbidden']);

/**
 * The hub's advice in a `disconnected` event: its `reconnect` field, or, from a hub that predates
 * the field, the advice its `reason` implies. An unknown `reconnect` value reads as `backoff`.
 */
export function reconnectAdvice(data: DisconnectedData | undefined): 'now' | 'backoff' | 'new_token' | 'no' {
  const advice = data?.reconnect;
  if (typeof advice === 'string') {
    switch (advice) {
      case 'now':
        return 'now';
      case 'new_token':
        return 'new_token';
      case 'no':
        return 'no';
      default:
        return 'backoff';
    }
  }
  const reason = typeof data?.reason === 'string' ? data.reason : '';
  if (TOKEN_REASONS.has(reason)) return 'new_token';
  if (STOP_REASONS.has(reason)) return 'no';
  // server_shutdown, server_disconnect, timeout and anything unknown.
  return 'backoff';
}

/** User override: return an action, or `undefined` to use the default. */
export type DisconnectPolicy = (
  info: { type: 'disconnected'; data: DisconnectedData } | { type: 'http'; status: number },
  context: PolicyContext,
) => PolicyAction | undefined;

/** Default decision for a `disconnected` system event. */
export function decideOnDisconnected(data: DisconnectedData | undefined, ctx: PolicyContext): PolicyAction {
  switch (reconnectAdvice(data)) {
    case 'no':
      return 'stop';
    case 'new_token':
      return ctx.canRefreshToken ? 'reconnect' : 'stop';
    default:
      return 'reconnect';
  }
}

/** Default decision for an HTTP error status seen while connecting. */
export function decideOnHttpStatus(status: number, ctx: PolicyContext): PolicyAction {
  if (status === 401 || status === 403) return ctx.canRefreshToken ? 'reconnect' : 'stop';
  if (status === 400) return 'stop';
  return 'reconnect';
}
