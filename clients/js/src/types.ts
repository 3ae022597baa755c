/**
 * Shared public types of the Herald client.
 */

/** The wire a connection runs on: Server-Sent Events (`GET /api/sse`) or a WebSocket (`GET /api/ws`). */
export type TransportKind = 'sse' | 'websocket';

/** Connection status of a {@link HeraldClient}. */
export type ConnectionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Data of the `connected` system event (first event of every stream, no id). */
export interface ConnectedData {
  connectionId: string;
  userId?: string | null;
  username?: string | null;
  channels?: string[];
  serverTime?: number | string;
}

/** Data of the `heartbeat` system event (no id). */
export interface HeartbeatData {
  /** Server time, milliseconds since the epoch. */
  ts: number;
}

/**
 * Known values of `disconnected.reason`. The server may add more: the client
 * decides on `disconnected.reconnect`, not on the reason (see `policy.ts`).
 */
export type DisconnectReason =
  | 'server_disconnect'
  | 'server_shutdown'
  | 'timeout'
  | 'token_expired'
  | (string & {});

/**
 * `disconnected.reconnect`: the hub's advice on coming back (docs/api.md).
 * - `now`: reconnect at once (with the last event id);
 * - `backoff`: reconnect after the backoff delay;
 * - `new_token`: reconnect only with a fresh token (the `token` option must be a function);
 * - `no`: do not reconnect.
 * The client treats a value it does not know as `backoff`.
 */
export type ReconnectAdvice = 'now' | 'backoff' | 'new_token' | 'no' | (string & {});

/** Data of the `disconnected` system event, sent just before the server ends the stream. */
export interface DisconnectedData {
  reason: DisconnectReason;
  /** The hub's advice; absent from hubs older than the field (the client then goes by `reason`). */
  reconnect?: ReconnectAdvice;
  message?: string;
  timestamp?: number | string;
}

/** Data of the `reset` system event: "you may have missed events, refetch state". */
export interface ResetData {
  reason: 'history_gap' | 'unknown_epoch' | 'replay_too_large' | (string & {});
  [key: string]: unknown;
}

/** Data of `presence:join` / `presence:leave`. The exact shape is server-defined. */
export interface PresenceData {
  userId?: string | null;
  username?: string | null;
  connectionId?: string;
  channels?: string[];
  [key: string]: unknown;
}

/** The system events every Herald stream may carry. */
export interface HeraldSystemEvents {
  connected: ConnectedData;
  heartbeat: HeartbeatData;
  disconnected: DisconnectedData;
  reset: ResetData;
  'presence:join': PresenceData;
  'presence:leave': PresenceData;
}

/** Names of the system events. `reset` and presence events carry ids (they are replayed like
 * published events); `connected` carries the stream's resume position; `heartbeat` and
 * `disconnected` carry none. */
export const SYSTEM_EVENTS: readonly (keyof HeraldSystemEvents)[] = [
  'connected',
  'heartbeat',
  'disconnected',
  'reset',
  'presence:join',
  'presence:leave',
];

/**
 * A user event map: event name -> payload type. Pass your own as the type
 * parameter of `HeraldClient<MyEvents>` to get typed handlers.
 */
export type EventMap = Record<string, unknown>;

/**
 * All events of a client: system events, the unnamed `message` event and the
 * user's own events.
 */
export type AllEvents<E extends EventMap> = HeraldSystemEvents & { message: unknown } & E;

/** One event as delivered to handlers. */
export interface HeraldEvent<T = unknown, K extends string = string> {
  /** The SSE event name (`event:` field; `message` when absent). */
  event: K;
  /** Parsed JSON of the `data:` field (the raw string when it is not valid JSON). */
  data: T;
  /** The SSE `id:` of this event; `undefined` for system events without an id. Opaque: compare for equality only. */
  id: string | undefined;
  /** The raw `data:` string as received. */
  raw: string;
  /** Local receive time (ms since epoch). */
  receivedAt: number;
}

/** Handler signature for `client.on(name, handler)`. */
export type HeraldHandler<T = unknown, K extends string = string> = (
  data: T,
  event: HeraldEvent<T, K>,
) => void;

/** Union of all typed events of a map, discriminated by `event`. */
export type AnyHeraldEvent<E extends EventMap> = {
  [K in keyof AllEvents<E> & string]: HeraldEvent<AllEvents<E>[K], K>;
}[keyof AllEvents<E> & string];

/** Snapshot of a client's observable state. */
export interface ClientState {
  status: ConnectionStatus;
  /** Id of the current server connection (from the `connected` event). */
  connectionId: string | undefined;
  /** The last error seen (cleared when the connection opens again). */
  error: Error | undefined;
  /** Why the client closed, once `status === 'closed'`. */
  closeReason: string | undefined;
  /** Tab-sharing role: `leader` owns the EventSource, `follower` receives via BroadcastChannel, `none` = unshared. */
  role: 'leader' | 'follower' | 'none';
  /**
   * The transport of the current (or next) connection attempt: the chosen one, or with
   * `transport: "auto"` the one being tried or kept. `undefined` in a follower tab until the leader
   * tells.
   */
  transport: TransportKind | undefined;
}
