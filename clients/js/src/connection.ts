/**
 * Connection: one logical subscription over a sequence of streams (EventSource
 * instances, WebSockets, or, with `transport: "auto"`, first one then the
 * other). Owns reconnects (backoff + jitter), the liveness timer, the reconnect
 * policy, resume ids and status. Knows nothing about tab sharing or user
 * handlers: it reports events and state to a {@link TransportSink}. What is
 * specific to a wire format lives in a {@link StreamDriver}: `SseDriver` here,
 * `WebSocketDriver` in websocket.ts.
 *
 * Why our own reconnect: the browser's built-in EventSource reconnect cannot
 * be tuned (no backoff, no jitter, no cap, it gives up for good on HTTP errors)
 * and would race ours. So on every `error` we close the EventSource and
 * schedule a new one ourselves, passing the last event id as `lastEventId`.
 * A WebSocket never reconnects by itself: the same logic brings it back.
 */
import { Backoff } from './backoff.js';
import { HeraldAuthError, HeraldConnectionError } from './errors.js';
import {
  getGlobalEventSource,
  loadEventSourcePackage,
  type EventSourceConstructor,
  type EventSourceLike,
  type EventSourceMessageLike,
} from './eventsource.js';
import { decideOnDisconnected, decideOnHttpStatus, reconnectAdvice, type DisconnectPolicy, type PolicyAction } from './policy.js';
import { canFetchStream, FetchSseDriver } from './fetch-stream.js';
import { deliverSse } from './sse-parser.js';
import { StatusMachine, type StatusInput } from './status.js';
import { SYSTEM_EVENTS, type ClientState, type ConnectedData, type DisconnectedData, type HeraldEvent, type TransportKind } from './types.js';
import { buildSubscribeUrl, withEnvelope, type SubscribeUrlParams } from './url.js';

export { deliverSse, parseData } from './sse-parser.js';

/**
 * Longest `Retry-After` the client waits for before reconnecting (5 minutes): a hub asks for
 * seconds; a larger value (a misconfigured proxy) must not park a page for hours.
 */
export const MAX_RETRY_AFTER_MS = 300_000;

/** A token, or a function returning a (possibly fresh) token before each connect. */
export type TokenSource =
  | string
  | null
  | undefined
  | (() => string | null | undefined | Promise<string | null | undefined>);

/** Where a transport reports to (implemented by HeraldClient). */
export interface TransportSink {
  /** A received event. */
  event(event: HeraldEvent): void;
  /** Part of the state changed. */
  state(patch: Partial<ClientState>): void;
  /** Last event id to resume from. */
  lastEventId(): string | undefined;
  /** Followers: the leader reported its last event id (kept for a later take-over). */
  observeLastEventId?(id: string | undefined): void;
}

/** What HeraldClient drives: a direct connection or a shared (tab) one. */
export interface Transport {
  start(): void;
  /** Make sure events with this name are received. */
  listen(name: string): void;
  /** Drop the current stream and connect again now. */
  reconnect(): void;
  /** Stop for good (user close). */
  close(): void;
}

export interface ConnectionConfig {
  url: string;
  path: string;
  userId?: string | undefined;
  username?: string | undefined;
  channels: string[];
  params?: Record<string, string | number | boolean | null | undefined> | undefined;
  token?: TokenSource;
  backoff: Backoff;
  /** ms without any event (heartbeats included) before reconnecting; 0 disables. */
  livenessTimeout: number;
  EventSource?: EventSourceConstructor | undefined;
  eventSourceInit?: Record<string, unknown> | undefined;
  disconnectPolicy?: DisconnectPolicy | undefined;
  /** Reconnect immediately on the browser's `online` event. Default true. */
  reconnectOnOnline?: boolean | undefined;
  /** SSE: ask the hub for `envelope=1` and unwrap it, so every event arrives whatever its name. Default true. */
  envelope?: boolean | undefined;
  /** SSE: read the stream with `fetch` (default where it can stream) or an `EventSource`. */
  sseReader?: 'fetch' | 'eventsource' | undefined;
  /** SSE over fetch: the `fetch` to use (default the global one). */
  fetch?: ((input: string, init?: RequestInit) => Promise<Response>) | undefined;
  /** SSE over fetch: extra request headers. */
  headers?: Record<string, string> | undefined;
  /** SSE over fetch: `credentials` (default `same-origin`, `include` with `eventSourceInit.withCredentials`). */
  credentials?: RequestCredentials | undefined;
}

/** Details of a refused request, where the stream implementation sees them (fetch does). */
export interface StreamFailure {
  /** The hub's error code (`{"error": {"code"}}`). */
  code?: string | undefined;
  /** `Retry-After`, in ms. */
  retryAfterMs?: number | undefined;
}

/** What a {@link StreamDriver} reports about the stream it opened. The connection ignores the
 * calls of a stream it has already left. */
export interface StreamCallbacks {
  /** The stream is established. */
  open(): void;
  /** An event. `id` is the stream's id for it (for SSE, the EventSource's last event id). */
  message(name: string, raw: string, data: unknown, id: string | undefined): void;
  /** Something arrived that nobody listens to: a sign of life; its id, if any, a resume position. */
  alive(id: string | undefined): void;
  /** The stream failed or ended. `status`: the HTTP status, where the implementation shows it. */
  fail(status: number | undefined, message: string | undefined, failure?: StreamFailure): void;
  /** The stream's `retry:` hint, in ms, where the implementation shows it (the fetch reader does). */
  retry?(ms: number): void;
}

/** One open stream, as its driver hands it over. */
export interface StreamHandle {
  /** Make sure events with this name reach `message` from now on. */
  listen(name: string): void;
  /** Close it and stop reporting. */
  close(): void;
}

/** The part of a connection specific to a wire format (SSE, WebSocket). */
export interface StreamDriver<F = unknown> {
  readonly kind: TransportKind;
  /** For error messages: `EventSource`, `WebSocket`. */
  readonly label: string;
  /** The constructor to open streams with, at once or once loaded. */
  factory(): F | PromiseLike<F>;
  /** Open a stream (may throw when the constructor throws). `names`: the names listened to. */
  connect(factory: F, query: SubscribeUrlParams, names: ReadonlySet<string>, cb: StreamCallbacks): StreamHandle;
}

const ALWAYS_LISTENED = ['message', ...SYSTEM_EVENTS];
/** Events whose `lastEventId` is only the stream's position, never an id of their own. */
const NO_OWN_ID: ReadonlySet<string> = new Set(['connected', 'heartbeat', 'disconnected']);

function isPromiseLike<T>(v: unknown): v is PromiseLike<T> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

/** SSE over an EventSource (injected, global, or the `eventsource` package). */
export class SseDriver implements StreamDriver<EventSourceConstructor> {
  readonly kind = 'sse';
  readonly label = 'EventSource';

  constructor(private readonly config: ConnectionConfig) {}

  factory(): EventSourceConstructor | PromiseLike<EventSourceConstructor> {
    return this.config.EventSource ?? getGlobalEventSource() ?? loadEventSourcePackage();
  }

  connect(Ctor: EventSourceConstructor, query: SubscribeUrlParams, names: ReadonlySet<string>, cb: StreamCallbacks): StreamHandle {
    const envelope = this.config.envelope !== false;
    const url = buildSubscribeUrl(this.config.url, envelope ? withEnvelope(query) : query, this.config.path);
    const es: EventSourceLike = this.config.eventSourceInit ? new Ctor(url, this.config.eventSourceInit) : new Ctor(url);
    const listeners = new Map<string, (ev: EventSourceMessageLike) => void>();
    const attach = (name: string) => {
      if (listeners.has(name)) return;
      const listener = (ev: EventSourceMessageLike) => {
        if (name === 'open') return cb.open();
        if (name === 'error') {
          const status = typeof ev?.code === 'number' && ev.code > 0 ? ev.code : undefined;
          return cb.fail(status, typeof ev?.message === 'string' ? ev.message : undefined);
        }
        const raw = typeof ev.data === 'string' ? ev.data : ev.data == null ? '' : String(ev.data);
        // EventSource's lastEventId persists across events without an id (see Connection.deliver).
        deliverSse(cb, envelope, name, raw, ev.lastEventId || undefined);
      };
      listeners.set(name, listener);
      es.addEventListener(name, listener);
    };
    attach('open');
    attach('error');
    for (const name of names) attach(name);
    return {
      listen: attach,
      close: () => {
        for (const [name, l] of listeners) es.removeEventListener(name, l);
        listeners.clear();
        try {
          es.close();
        } catch {
          /* ignore */
        }
      },
    };
  }
}

/**
 * The connection logic shared by every transport. With several drivers (`transport: "auto"`) it
 * tries the first, moves on to the next whenever a stream fails before anything arrived on it,
 * and sticks for good to the first that delivers an event.
 */
export class Connection implements Transport {
  private readonly machine = new StatusMachine('connecting');
  private readonly names = new Set<string>(ALWAYS_LISTENED);
  private stream: StreamHandle | undefined;
  /** Incremented for every stream; callbacks of older streams are ignored. */
  private generation = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private livenessTimer: ReturnType<typeof setTimeout> | undefined;
  private connectionId: string | undefined;
  /** The last `retry:` hint of a stream (ms): the least delay after `disconnected` with `backoff` advice. */
  private retryHint: number | undefined;
  private started = false;
  private stopped = false;
  private driverIndex = 0;
  /** Whether the current driver delivered something: then it is kept for every reconnect. */
  private pinned: boolean;
  /** The transport last reported to the sink. */
  private reported: TransportKind | undefined;
  private readonly onOnline = () => {
    if (this.stopped || this.machine.status !== 'reconnecting' || this.reconnectTimer === undefined) return;
    this.clearReconnectTimer();
    this.openStream();
  };

  constructor(
    private readonly config: ConnectionConfig,
    private readonly sink: TransportSink,
    private readonly drivers: readonly StreamDriver<any>[], // eslint-disable-line @typescript-eslint/no-explicit-any
  ) {
    if (!drivers.length) throw new TypeError('Connection: no transport');
    this.pinned = drivers.length === 1;
  }

  get status() {
    return this.machine.status;
  }

  /** The transport of the current (or next) stream. */
  get transport(): TransportKind {
    return this.drivers[this.driverIndex]!.kind;
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    if (this.config.reconnectOnOnline !== false) {
      const g = globalThis as { addEventListener?: (t: string, l: () => void) => void; window?: unknown };
      if (typeof g.addEventListener === 'function' && typeof g.window !== 'undefined') {
        g.addEventListener('online', this.onOnline);
      }
    }
    this.openStream();
  }

  listen(name: string): void {
    if (this.names.has(name)) return;
    this.names.add(name);
    this.stream?.listen(name);
  }

  reconnect(): void {
    if (this.stopped) return;
    if (!this.started) return this.start();
    this.detach();
    this.clearReconnectTimer();
    this.setStatus('retry', { connectionId: undefined });
    this.openStream();
  }

  close(): void {
    this.stop('client_close');
  }

  // ---------------------------------------------------------------- streams

  private openStream(): void {
    if (this.stopped) return;
    const gen = ++this.generation;
    const driver = this.drivers[this.driverIndex]!;
    if (driver.kind !== this.reported) this.sink.state({ transport: (this.reported = driver.kind) });
    const { token } = this.config;
    let tokenValue: string | null | undefined | PromiseLike<string | null | undefined>;
    try {
      tokenValue = typeof token === 'function' ? token() : token;
    } catch (err) {
      this.drop(new HeraldConnectionError('token', 'token provider threw', { cause: err }));
      return;
    }
    let factory: unknown;
    try {
      factory = driver.factory();
    } catch (err) {
      this.drop(new HeraldConnectionError('network', `could not start the ${driver.label}`, { cause: err }));
      return;
    }
    if (!isPromiseLike(factory) && !isPromiseLike(tokenValue)) {
      this.createStream(gen, driver, factory, tokenValue);
      return;
    }
    // Async path: token provider returned a promise and/or the constructor must be loaded.
    // Arm the liveness timer so a hanging token provider cannot stall us forever.
    this.armLiveness(gen);
    // Each side tags its own failure, so a rejected token is reported as a token error whether
    // or not the constructor also had to be loaded.
    const failed = (kind: 'token' | 'network') => (cause: unknown) => {
      throw { kind, cause };
    };
    Promise.all([
      Promise.resolve(tokenValue).then(undefined, failed('token')),
      Promise.resolve(factory).then(undefined, failed('network')),
    ]).then(
      ([t, f]) => {
        if (gen === this.generation && !this.stopped) this.createStream(gen, driver, f, t);
      },
      (err: { kind: 'token' | 'network'; cause: unknown }) => {
        if (gen !== this.generation || this.stopped) return;
        const message = err.kind === 'token' ? 'token provider failed' : `could not start the ${driver.label}`;
        this.drop(new HeraldConnectionError(err.kind, message, { cause: err.cause }));
      },
    );
  }

  private createStream(gen: number, driver: StreamDriver, factory: unknown, token: string | null | undefined): void {
    const query: SubscribeUrlParams = {
      userId: this.config.userId,
      username: this.config.username,
      channels: this.config.channels,
      lastEventId: this.sink.lastEventId(),
      token: token ?? undefined,
      params: this.config.params,
    };
    const live = () => gen === this.generation && !this.stopped;
    const cb: StreamCallbacks = {
      open: () => live() && this.handleOpen(gen),
      message: (name, raw, data, id) => live() && this.deliver(gen, name, raw, data, id),
      alive: (id) => live() && this.handleAlive(gen, id),
      fail: (status, message, failure) => live() && this.handleError(status, message, failure),
      retry: (ms) => {
        if (live()) this.retryHint = ms;
      },
    };
    try {
      this.stream = driver.connect(factory, query, this.names, cb);
    } catch (err) {
      this.drop(new HeraldConnectionError('network', `${driver.label} constructor threw`, { cause: err }));
      return;
    }
    this.armLiveness(gen);
  }

  /** Close the current stream (if any) and forget it. */
  private detach(): void {
    this.generation++;
    this.clearLiveness();
    const stream = this.stream;
    this.stream = undefined;
    stream?.close();
  }

  // ---------------------------------------------------------------- events

  private handleOpen(gen: number): void {
    this.setStatus('open', { error: undefined });
    this.armLiveness(gen);
  }

  private handleError(status: number | undefined, message: string | undefined, failure: StreamFailure = {}): void {
    if (status !== undefined) {
      const { code, retryAfterMs } = failure;
      const text = `subscribe failed with HTTP ${status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`;
      const extra = { status, code, retryAfterMs };
      const err = status === 401 || status === 403 ? new HeraldAuthError(text, extra) : new HeraldConnectionError('http', text, extra);
      const action = this.decide({ type: 'http', status }, () => decideOnHttpStatus(status, this.policyContext()));
      if (action === 'stop') return this.stop(`http_${status}`, err);
      // 429 and 503 say when to come back: not sooner than `Retry-After` (capped).
      const backoff = this.config.backoff.next();
      return this.drop(err, retryAfterMs !== undefined ? Math.max(backoff, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS)) : backoff);
    }
    const msg = message ? `: ${message}` : '';
    this.drop(new HeraldConnectionError('network', `connection lost${msg}`));
  }

  /** Data is flowing on this stream: the connection is good. */
  private flowing(gen: number): void {
    this.armLiveness(gen);
    // Start backoff over, and keep this transport from now on.
    this.config.backoff.reset();
    this.pinned = true;
    if (this.machine.status !== 'open') this.setStatus('open', { error: undefined });
  }

  private handleAlive(gen: number, id: string | undefined): void {
    this.flowing(gen);
    if (id) this.sink.observeLastEventId?.(id);
  }

  private deliver(gen: number, name: string, raw: string, data: unknown, streamId: string | undefined): void {
    this.flowing(gen);
    // EventSource's lastEventId persists across events without an id, and is
    // also updated by events nobody listens to (the browser skips those). So
    // events that never carry an id of their own (heartbeat, disconnected) and
    // `connected` (whose id, when present, is a resume position, not an event)
    // report no id; the stream's last id they show is still recorded as the
    // resume point. Published events, `reset` and presence events carry ids.
    const positionOnly = NO_OWN_ID.has(name);
    const id = positionOnly ? undefined : streamId;
    if (positionOnly && streamId) this.sink.observeLastEventId?.(streamId);

    if (name === 'connected') {
      const cid = (data as Partial<ConnectedData> | null)?.connectionId;
      this.connectionId = typeof cid === 'string' ? cid : undefined;
      this.sink.state({ connectionId: this.connectionId });
    }

    this.sink.event({ event: name, data, id, raw, receivedAt: Date.now() });
    if (gen !== this.generation || this.stopped) return; // a handler closed or reconnected us

    if (name === 'disconnected') this.handleDisconnected(data as DisconnectedData);
  }

  private handleDisconnected(data: DisconnectedData | undefined): void {
    const reason = typeof data?.reason === 'string' ? data.reason : 'unknown';
    const advice = reconnectAdvice(data);
    const err = new HeraldConnectionError(
      advice === 'new_token' || reason.startsWith('token_') ? 'token' : 'disconnected',
      `server ended the stream: ${reason}${data?.message ? ` (${data.message})` : ''}`,
      { reason },
    );
    const action = this.decide({ type: 'disconnected', data: data ?? { reason } }, () => decideOnDisconnected(data, this.policyContext()));
    if (action === 'stop') this.stop(reason, err);
    // `now`: the hub ended a healthy connection (its maximum age): come back without a delay.
    else if (advice === 'now') this.drop(err, 0);
    // Otherwise after the backoff, and no sooner than the stream's `retry:` hint (docs/api.md):
    // at shutdown the hub spreads its clients' hints over the restart window.
    else this.drop(err, Math.max(this.config.backoff.next(), Math.min(this.retryHint ?? 0, MAX_RETRY_AFTER_MS)));
  }

  // ---------------------------------------------------------------- policy

  private policyContext() {
    return { canRefreshToken: typeof this.config.token === 'function' };
  }

  private decide(info: Parameters<DisconnectPolicy>[0], fallback: () => PolicyAction): PolicyAction {
    const custom = this.config.disconnectPolicy?.(info, this.policyContext());
    return custom === 'stop' || custom === 'reconnect' ? custom : fallback();
  }

  /** The stream is gone but we will come back: close it, back off (or wait `delay` ms), reconnect. */
  private drop(error: HeraldConnectionError, delay?: number): void {
    if (this.stopped) return;
    this.detach();
    // Nothing ever arrived on this transport: try the next one (`auto`).
    if (!this.pinned) this.driverIndex = (this.driverIndex + 1) % this.drivers.length;
    this.connectionId = undefined;
    this.setStatus('drop', { error, connectionId: undefined });
    this.scheduleReconnect(delay ?? this.config.backoff.next());
  }

  /** Stop for good. */
  private stop(reason: string, error?: HeraldConnectionError): void {
    if (this.stopped) return;
    this.detach();
    this.clearReconnectTimer();
    this.stopped = true;
    const g = globalThis as { removeEventListener?: (t: string, l: () => void) => void };
    if (typeof g.removeEventListener === 'function') g.removeEventListener('online', this.onOnline);
    this.connectionId = undefined;
    const patch: Partial<ClientState> = { closeReason: reason, connectionId: undefined };
    if (error) patch.error = error;
    this.setStatus('close', patch);
  }

  private setStatus(input: StatusInput, patch: Partial<ClientState> = {}): void {
    const prev = this.machine.apply(input);
    if (prev !== undefined) patch.status = this.machine.status;
    if (Object.keys(patch).length) this.sink.state(patch);
  }

  // ---------------------------------------------------------------- timers

  private scheduleReconnect(delay: number): void {
    this.clearReconnectTimer();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.openStream();
    }, delay);
  }

  private clearReconnectTimer(): void {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
  }

  private armLiveness(gen: number): void {
    this.clearLiveness();
    const timeout = this.config.livenessTimeout;
    if (!(timeout > 0) || !Number.isFinite(timeout)) return;
    this.livenessTimer = setTimeout(() => {
      this.livenessTimer = undefined;
      if (gen !== this.generation || this.stopped) return;
      this.drop(new HeraldConnectionError('liveness', `no event or heartbeat for ${timeout} ms`));
    }, timeout);
  }

  private clearLiveness(): void {
    if (this.livenessTimer !== undefined) clearTimeout(this.livenessTimer);
    this.livenessTimer = undefined;
  }
}

/**
 * The SSE driver for `config`: `fetch` streaming by default where the runtime has it, else an
 * EventSource. An injected `EventSource`, an `eventSourceInit` other than `withCredentials`, or
 * `sseReader: 'eventsource'` choose the EventSource.
 */
export function sseDriver(config: ConnectionConfig): StreamDriver<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const init = config.eventSourceInit;
  const onlyCredentials = !init || Object.keys(init).every((k) => k === 'withCredentials');
  const wantsEventSource = config.sseReader === 'eventsource' || (config.sseReader === undefined && (!!config.EventSource || !onlyCredentials));
  if (!wantsEventSource && canFetchStream(config.fetch ?? (globalThis as { fetch?: unknown }).fetch)) {
    return new FetchSseDriver({
      url: config.url,
      path: config.path,
      fetch: config.fetch,
      headers: config.headers,
      credentials: config.credentials ?? (init?.withCredentials ? 'include' : undefined),
      envelope: config.envelope,
    });
  }
  return new SseDriver(config);
}

/** The SSE connection: a {@link Connection} over SSE streams (fetch or EventSource, see {@link sseDriver}). */
export class SseConnection extends Connection {
  constructor(config: ConnectionConfig, sink: TransportSink) {
    super(config, sink, [sseDriver(config)]);
  }
}
