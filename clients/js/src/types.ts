/**
 * Shared public types of the Herald client.
 */

/** The wire a connection runs on: Server-Sent Events (`GET /api/sse`) or a WebSocket (`GET /api/ws`). */
export type TransportKind = 'sse' | 'websocket';

/** Connection status of a {@link HeraldClient}. */
export type ConnectionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * Data of the `connected` system event, first on every stream (its id, on a new connection, is
 * the hub's newest event id: a resume position). `serverTime` is RFC 3339 (`2026-11-21T10:00:00.000Z`).
 */
export interface ConnectedData {
  /** 32 hex digits. */
  connectionId: string;
  userId?: string | null;
  username?: string | null;
  channels?: string[];
  serverTime?: string;
  /** The subscribe query's `sessionId`, where the hub supports connection metadata. */
  sessionId?: string | null;
  /** The connection's metadata (query `metadata=`, JWT claim or auth hook), where the hub supports it. */
  metadata?: Record<string, unknown> | null;
}

/** Data of the `heartbeat` system event (no id). */
export interface HeartbeatData {
  /** Server time, milliseconds since the epoch. */
  ts: number;
}

/**
 * Known values of `disconnected.reason` (docs/api.md, "Events the hub sends"):
 * - `server_disconnect`: `POST /api/sse/disconnect` or `/disconnect-all` (advice `backoff`);
 * - `server_shutdown`: the hub is stopping (`backoff`, with a spread `retry:`);
 * - `timeout`: the connection reached its maximum age, `--connection-timeout` (`now`);
 * - `token_expired`: the subscriber's token ran out (`new_token`);
 * - `idle`: nothing but heartbeats for `--idle-timeout`, on hubs that have it (`backoff`).
 * The server may add more: the client decides on `disconnected.reconnect`, not on the reason
 * (see `policy.ts`).
 */
export type DisconnectReason =
  | 'server_disconnect'
  | 'server_shutdown'
  | 'timeout'
  | 'token_expired'
  | 'idle'
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
  /** For people; may change. */
  message?: string;
  /** RFC 3339. */
  timestamp?: string;
}

/**
 * Data of the `reset` system event: "you may have missed events, refetch state". Its id is the
 * hub's newest event id (where the next resume starts).
 */
export interface ResetData {
  /**
   * `history_gap`: events after `lastEventId` left the replay window; `unknown_epoch`: the id
   * is from another run of the hub (restarted without `--data-dir`) or unreadable;
   * `replay_too_large`: more to replay than the hub's cap.
   */
  reason: 'history_gap' | 'unknown_epoch' | 'replay_too_large' | (string & {});
  /** The id the client asked to resume from. */
  lastEventId: string;
  /** For people; may change. */
  message: string;
}

/**
 * Data of `presence:join` (a user's first connection to a presence channel, on any node) and
 * `presence:leave` (their last one closed). Sent on channels matching `--presence-channels`;
 * anonymous connections cause none.
 */
export interface PresenceData {
  channel: string;
  userId: string;
  username: string | null;
  /** RFC 3339. */
  timestamp: string;
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
  /** The event name (the envelope's `event`, or the SSE `event:` field; `message` when absent). */
  event: K;
  /** Parsed JSON of the `data:` field (the raw string when it is not valid JSON). */
  data: T;
  /** The SSE `id:` of this event; `undefined` for system events without an id. Opaque: compare for equality only. */
  id: string | undefined;
  /**
   * The payload as text: the `data:` string as received, or, from an envelope (`envelope=1`, or a
   * WebSocket frame), a text payload as it is and a JSON payload serialised again.
   */
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
