/**
 * HeraldClient: the public, framework-free subscriber.
 *
 * ```ts
 * const client = new HeraldClient<{ notification: { title: string } }>({
 *   url: 'https://herald.example.com', userId: 'alice', channels: ['orders'],
 * });
 * client.on('notification', (data, ev) => console.log(data.title, ev.id));
 * client.onStatusChange((s) => console.log('status', s));
 * // later
 * client.close();
 * ```
 */
import { Backoff, type BackoffOptions } from './backoff.js';
import { SseConnection, type TokenSource, type Transport, type TransportSink } from './connection.js';
import { Emitter, ListenerSet } from './emitter.js';
import { EventIdTracker } from './event-id.js';
import type { EventSourceConstructor } from './eventsource.js';
import type { HeraldAuthError } from './errors.js';
import type { DisconnectPolicy } from './policy.js';
import {
  defaultShareConnection,
  deriveShareKey,
  detectSharingSupport,
  SharedTransport,
  type BroadcastChannelConstructor,
  type LockManagerLike,
} from './sharing.js';
import {
  SYSTEM_EVENTS,
  type AllEvents,
  type AnyHeraldEvent,
  type ClientState,
  type ConnectionStatus,
  type EventMap,
  type HeraldEvent,
  type HeraldHandler,
  type TransportKind,
} from './types.js';
import { DEFAULT_SSE_PATH, normalizeChannels } from './url.js';
import { AutoConnection, DEFAULT_WS_PATH, getGlobalWebSocket, WebSocketConnection, type WebSocketConstructor } from './websocket.js';

export const DEFAULT_LIVENESS_TIMEOUT = 45_000;
/** The hub's default `HERALD_HEARTBEAT_INTERVAL`. */
export const DEFAULT_HEARTBEAT_INTERVAL = 15_000;
/** How many heartbeat intervals of silence make a connection dead. */
export const LIVENESS_HEARTBEATS = 3;

/** `transport` option: `sse`, `websocket`, or `auto` (SSE first, WebSocket when SSE cannot connect). */
export type TransportOption = TransportKind | 'auto';

export interface HeraldClientOptions {
  /** Base URL of the Herald server, e.g. `https://herald.example.com` (relative works in browsers). */
  url: string;
  /**
   * The wire: `sse` (default, `GET /api/sse`), `websocket` (`GET /api/ws`), or `auto`: SSE first,
   * and a WebSocket when an SSE attempt fails before anything arrived on it (then the two alternate
   * until one delivers, and the client keeps that one). See the README for why SSE comes first.
   * Same events, handlers, resume, reconnect policy and status whichever runs.
   */
  transport?: TransportOption;
  /** Endpoint path appended to `url`. Default `/api/sse`. */
  path?: string;
  /** WebSocket endpoint path appended to `url` (a `url` ending with `path` has it replaced). Default `/api/ws`. */
  wsPath?: string;
  userId?: string;
  username?: string;
  /** Channels to subscribe to (array or comma-separated string). */
  channels?: string | readonly string[];
  /**
   * JWT sent as the `token` query parameter. A function is called before every
   * (re)connect and makes `token_expired` recoverable (see the reconnect policy).
   */
  token?: TokenSource;
  /** Resume after this event id on the first connect. */
  lastEventId?: string;
  /** Extra query parameters. */
  params?: Record<string, string | number | boolean | null | undefined>;
  /** Reconnect backoff: `{initialDelay: 1000, maxDelay: 30000, multiplier: 2, jitter: 1}` (ms; jitter 1 = full jitter). */
  backoff?: BackoffOptions;
  /**
   * Reconnect when no event (heartbeats included) arrived for this many ms.
   * Default three `heartbeatInterval`s: 45000 (three default 15 s heartbeats). Set it above the
   * server's heartbeat interval. 0 disables. Over a WebSocket every frame counts (the hub always
   * sends `heartbeat` frames there, since pages never see WebSocket pings).
   */
  livenessTimeout?: number;
  /** The hub's `HERALD_HEARTBEAT_INTERVAL` in ms, for the default `livenessTimeout`. Default 15000. */
  heartbeatInterval?: number;
  /**
   * Share one connection between same-origin tabs (Web Locks + BroadcastChannel).
   * Default: true in browser windows that support both, false elsewhere. Falls
   * back to one connection per tab when unsupported.
   */
  shareConnection?: boolean;
  /** Override the derived tab-sharing key (lock/channel names). */
  shareKey?: string;
  /**
   * Event names to listen for from the start. Needed only where events arrive by name (a hub
   * older than `envelope=1`, or `envelope: false`) and the EventSource reader is used: there an
   * unlisted name never arrives. With the default every event arrives anyway.
   */
  events?: readonly string[];
  /** EventSource constructor to use (tests, Node polyfills). Default: global, else the `eventsource` package. */
  EventSource?: EventSourceConstructor;
  /** Second argument of the EventSource constructor (e.g. `{withCredentials: true}`, or `{fetch}` for the `eventsource` package). */
  eventSourceInit?: Record<string, unknown>;
  /**
   * WebSocket constructor for `websocket`/`auto` (tests, Node < 22: the npm `ws` package).
   * Default: the global one. `websocket` without either throws; `auto` without either is SSE only.
   */
  WebSocket?: WebSocketConstructor;
  /** Third argument of the WebSocket constructor (npm `ws`: `{headers}`, `{origin}`...; browsers take none). */
  webSocketOptions?: Record<string, unknown>;
  /** Override the reconnect policy per trigger (return undefined for the default). */
  disconnectPolicy?: DisconnectPolicy;
  /** Reconnect at once on the browser `online` event. Default true. */
  reconnectOnOnline?: boolean;
  /** Web Locks manager for tab sharing (default `navigator.locks`). */
  locks?: LockManagerLike;
  /** BroadcastChannel constructor for tab sharing (default global). */
  BroadcastChannel?: BroadcastChannelConstructor;
  /**
   * Connect at construction. Default true, except in server code of a framework that renders
   * on the server (Next.js: `process.env.NEXT_RUNTIME` set and no `window`), where a module-level
   * client must not open a stream per server process. With false, call {@link HeraldClient.connect}.
   */
  autoConnect?: boolean;
  /**
   * SSE: ask the hub for `envelope=1` (every event as a default `message` carrying `{id, event,
   * data}`) and unwrap it, so that every event reaches `on(name)` and `on('*')` without listing
   * names first. Default true; a hub older than the option ignores it and sends named events,
   * which the client then handles as before. `false` asks for named events.
   */
  envelope?: boolean;
  /**
   * SSE: read the stream with `fetch` (default wherever `fetch` can stream a body: it sends the
   * token as `Authorization: Bearer`, sees HTTP statuses and the hub's error codes, stops on
   * 401/403 with a {@link HeraldAuthError} and waits for `Retry-After` on 429/503) or with an
   * `EventSource` (`'eventsource'`: the native one, else the `eventsource` package). Passing the
   * `EventSource` option, or an `eventSourceInit` other than `{withCredentials}`, chooses the
   * EventSource.
   */
  sseReader?: 'fetch' | 'eventsource';
  /** SSE over fetch: the `fetch` to use. Default the global one. */
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
  /** SSE over fetch: extra request headers (the token goes in `Authorization` on its own). */
  headers?: Record<string, string>;
  /** SSE over fetch: `credentials`. Default `same-origin`; `include` with `eventSourceInit: {withCredentials: true}`. */
  credentials?: RequestCredentials;
}

/** Whether this is server code of a framework that renders on the server (see `autoConnect`). */
export function isServerRendering(): boolean {
  if (typeof (globalThis as { window?: unknown }).window !== 'undefined') return false;
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return !!env?.NEXT_RUNTIME;
}

const SYSTEM_SET: ReadonlySet<string> = new Set(SYSTEM_EVENTS);
const WILDCARD = '*';

type AnyHandler = (data: unknown, event: HeraldEvent) => void;

export class HeraldClient<E extends EventMap = EventMap> {
  readonly options: Readonly<HeraldClientOptions>;
  private readonly handlers = new Emitter<[unknown, HeraldEvent]>();
  private readonly stateListeners = new ListenerSet<[ClientState, ClientState]>();
  private readonly errorListeners = new ListenerSet<[Error]>();
  private readonly tracker: EventIdTracker;
  private readonly transport: Transport;
  private currentState: ClientState;
  private started = false;
  /** The tab-sharing key when sharing is active. */
  readonly shareKey: string | undefined;

  constructor(options: HeraldClientOptions) {
    if (!options || typeof options.url !== 'string') throw new TypeError('HeraldClient: `url` is required');
    this.options = Object.freeze({ ...options });
    this.tracker = new EventIdTracker(options.lastEventId);

    const channels = normalizeChannels(options.channels);
    const path = options.path ?? DEFAULT_SSE_PATH;
    const backoff = new Backoff(options.backoff);
    const mode = options.transport ?? 'sse';
    if (mode !== 'sse' && mode !== 'websocket' && mode !== 'auto') {
      throw new TypeError(`HeraldClient: unknown transport ${JSON.stringify(mode)} (sse, websocket or auto)`);
    }
    const hasWebSocket = !!(options.WebSocket ?? getGlobalWebSocket());
    if (mode === 'websocket' && !hasWebSocket) {
      throw new TypeError('HeraldClient: transport "websocket" needs a WebSocket: there is no global one, pass the `WebSocket` option (e.g. the `ws` package)');
    }
    const kind = mode === 'auto' ? (hasWebSocket ? 'auto' : 'sse') : mode;
    const livenessTimeout = options.livenessTimeout ?? LIVENESS_HEARTBEATS * (options.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL);
    const sink: TransportSink = {
      event: (ev) => this.dispatch(ev),
      state: (patch) => this.patchState(patch),
      lastEventId: () => this.tracker.current,
      observeLastEventId: (id) => void this.tracker.observe(id),
    };
    const createConnection = (s: TransportSink) => {
      const config = {
        url: options.url,
        path,
        userId: options.userId,
        username: options.username,
        channels,
        params: options.params,
        token: options.token,
        backoff,
        livenessTimeout,
        EventSource: options.EventSource,
        eventSourceInit: options.eventSourceInit,
        disconnectPolicy: options.disconnectPolicy,
        reconnectOnOnline: options.reconnectOnOnline,
        wsPath: options.wsPath ?? DEFAULT_WS_PATH,
        WebSocket: options.WebSocket,
        webSocketOptions: options.webSocketOptions,
        envelope: options.envelope,
        sseReader: options.sseReader,
        fetch: options.fetch,
        headers: options.headers,
        credentials: options.credentials,
      };
      if (kind === 'websocket') return new WebSocketConnection(config, s);
      if (kind === 'auto') return new AutoConnection(config, s);
      return new SseConnection(config, s);
    };

    const wantShare = options.shareConnection ?? defaultShareConnection();
    const support = wantShare
      ? detectSharingSupport({ locks: options.locks, BroadcastChannel: options.BroadcastChannel })
      : undefined;

    this.currentState = {
      status: 'connecting',
      connectionId: undefined,
      error: undefined,
      closeReason: undefined,
      role: support ? 'follower' : 'none',
      transport: support ? undefined : kind === 'websocket' ? 'websocket' : 'sse',
    };

    if (support) {
      this.shareKey =
        options.shareKey ??
        deriveShareKey({ url: options.url, path, userId: options.userId, username: options.username, channels, params: options.params });
      this.transport = new SharedTransport({ key: this.shareKey, support, createConnection }, sink);
    } else {
      this.shareKey = undefined;
      this.transport = createConnection(sink);
    }
    for (const name of options.events ?? []) this.listenFor(name);
    if (options.autoConnect ?? !isServerRendering()) this.connect();
  }

  /**
   * Open the connection: needed only with `autoConnect: false` (or the server-rendering default);
   * a no-op once started or closed.
   */
  connect(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.transport.start();
  }

  /** Whether {@link connect} ran (at construction with `autoConnect`). */
  get connectStarted(): boolean {
    return this.started;
  }

  // ------------------------------------------------------------ state

  get status(): ConnectionStatus {
    return this.currentState.status;
  }

  /** Id of the current server connection (from the `connected` event). */
  get connectionId(): string | undefined {
    return this.currentState.connectionId;
  }

  /** The last event id seen (sent as `lastEventId` on every reconnect). */
  get lastEventId(): string | undefined {
    return this.tracker.current;
  }

  /** Snapshot of status, connectionId, error, closeReason and sharing role. */
  get state(): ClientState {
    return this.currentState;
  }

  /** The transport of the current (or next) connection attempt (see {@link ClientState.transport}). */
  get activeTransport(): TransportKind | undefined {
    return this.currentState.transport;
  }

  /** `leader` / `follower` when sharing a connection between tabs, `none` otherwise. */
  get role(): ClientState['role'] {
    return this.currentState.role;
  }

  get closed(): boolean {
    return this.currentState.status === 'closed';
  }

  // ------------------------------------------------------------ handlers

  /**
   * Handle an event by name. The handler gets the parsed JSON data and the full
   * event (`id`, `event`, `raw`). `'*'` receives every event this client
   * receives: every event the hub sends (with `envelope=1`, the default; over an
   * EventSource without it, only the names listened to via `on(name)` or the `events`
   * option). Returns an unsubscribe function.
   */
  on(event: '*', handler: (data: unknown, event: AnyHeraldEvent<E>) => void): () => void;
  on<K extends keyof AllEvents<E> & string>(event: K, handler: HeraldHandler<AllEvents<E>[K], K>): () => void;
  /** Untyped event maps only: any name, with the payload type taken from the handler. */
  on<T>(event: string extends keyof E ? string : never, handler: HeraldHandler<T>): () => void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, handler: (data: any, event: any) => void): () => void {
    if (typeof handler !== 'function') throw new TypeError('HeraldClient.on: handler must be a function');
    if (this.closed) return () => {};
    if (event !== WILDCARD) this.listenFor(event);
    return this.handlers.on(event, handler as AnyHandler);
  }

  /** Remove a handler added with {@link on}. */
  off(event: '*', handler: (data: unknown, event: AnyHeraldEvent<E>) => void): void;
  off<K extends keyof AllEvents<E> & string>(event: K, handler: HeraldHandler<AllEvents<E>[K], K>): void;
  off<T>(event: string extends keyof E ? string : never, handler: HeraldHandler<T>): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, handler: (data: any, event: any) => void): void {
    this.handlers.off(event, handler as AnyHandler);
  }

  /** Called with (status, previous) on every status change. Returns an unsubscribe function. */
  onStatusChange(listener: (status: ConnectionStatus, previous: ConnectionStatus) => void): () => void {
    return this.stateListeners.add((s, prev) => {
      if (s.status !== prev.status) listener(s.status, prev.status);
    });
  }

  /** Called with (state, previous) whenever status, connectionId, error, closeReason or role change. */
  onStateChange(listener: (state: ClientState, previous: ClientState) => void): () => void {
    return this.stateListeners.add(listener);
  }

  /** Called with every connection error (the client keeps reconnecting unless the policy says stop). */
  onError(listener: (error: Error) => void): () => void {
    return this.errorListeners.add(listener);
  }

  // ------------------------------------------------------------ control

  /** Drop the current stream and reconnect now (followers ask the leader). No-op once closed. */
  reconnect(): void {
    if (this.closed) return;
    if (!this.started) return this.connect();
    this.transport.reconnect();
  }

  /** Stop everything: EventSource, timers, tab-sharing lock and channel, and all listeners. Final. */
  close(): void {
    if (this.closed) return;
    this.transport.close();
    this.patchState({ status: 'closed', closeReason: this.currentState.closeReason ?? 'client_close', connectionId: undefined });
    this.handlers.clear();
    this.stateListeners.clear();
    this.errorListeners.clear();
  }

  // ------------------------------------------------------------ internals

  private listenFor(name: string): void {
    if (name === WILDCARD || name === 'message' || SYSTEM_SET.has(name)) return;
    this.transport.listen(name);
  }

  private dispatch(ev: HeraldEvent): void {
    if (this.closed) return;
    if (ev.id) {
      // Replays after a reconnect or a leader hand-over may repeat an event: deliver once.
      if (this.tracker.seen(ev.id)) return;
      this.tracker.observe(ev.id);
    }
    this.handlers.emit(ev.event, ev.data, ev);
    this.handlers.emit(WILDCARD, ev.data, ev);
  }

  private patchState(patch: Partial<ClientState>): void {
    const prev = this.currentState;
    if (prev.status === 'closed') return;
    const next: ClientState = { ...prev, ...patch };
    if (next.status !== 'closed') next.closeReason = undefined;
    const changed = (Object.keys(next) as (keyof ClientState)[]).some((k) => next[k] !== prev[k]);
    if (!changed) return;
    this.currentState = next;
    if (patch.error && patch.error !== prev.error) this.errorListeners.emit(patch.error);
    this.stateListeners.emit(next, prev);
  }
}
