/**
 * SseConnection: one logical subscription over a sequence of EventSource
 * instances. Owns reconnects (backoff + jitter), the liveness timer and the
 * reconnect policy. Knows nothing about tab sharing or user handlers: it
 * reports events and state to a {@link TransportSink}.
 *
 * Why our own reconnect: the browser's built-in EventSource reconnect cannot
 * be tuned (no backoff, no jitter, no cap, it gives up for good on HTTP errors)
 * and would race ours. So on every `error` we close the EventSource and
 * schedule a new one ourselves, passing the last event id as `lastEventId`.
 */
import { Backoff } from './backoff.js';
import { HeraldConnectionError } from './errors.js';
import {
  getGlobalEventSource,
  loadEventSourcePackage,
  type EventSourceConstructor,
  type EventSourceLike,
  type EventSourceMessageLike,
} from './eventsource.js';
import { decideOnDisconnected, decideOnHttpStatus, reconnectAdvice, type DisconnectPolicy, type PolicyAction } from './policy.js';
import { StatusMachine, type StatusInput } from './status.js';
import { SYSTEM_EVENTS, type ClientState, type ConnectedData, type DisconnectedData, type HeraldEvent } from './types.js';
import { buildSubscribeUrl } from './url.js';

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
}

const ALWAYS_LISTENED = ['message', ...SYSTEM_EVENTS];
/** Events whose `lastEventId` is only the stream's position, never an id of their own. */
const NO_OWN_ID: ReadonlySet<string> = new Set(['connected', 'heartbeat', 'disconnected']);

function isPromiseLike<T>(v: unknown): v is PromiseLike<T> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

/** Parse an SSE data field: JSON when possible, the raw string otherwise. */
export function parseData(raw: string): unknown {
  if (raw === '') return raw;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

export class SseConnection implements Transport {
  private readonly machine = new StatusMachine('connecting');
  private readonly names = new Set<string>(ALWAYS_LISTENED);
  private es: EventSourceLike | undefined;
  private esListeners = new Map<string, (ev: EventSourceMessageLike) => void>();
  /** Incremented for every stream; callbacks of older streams are ignored. */
  private generation = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private livenessTimer: ReturnType<typeof setTimeout> | undefined;
  private connectionId: string | undefined;
  private started = false;
  private stopped = false;
  private readonly onOnline = () => {
    if (this.stopped || this.machine.status !== 'reconnecting' || this.reconnectTimer === undefined) return;
    this.clearReconnectTimer();
    this.openStream();
  };

  constructor(
    private readonly config: ConnectionConfig,
    private readonly sink: TransportSink,
  ) {}

  get status() {
    return this.machine.status;
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
    if (this.es) this.attach(this.es, this.generation, name);
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
    const { token } = this.config;
    let tokenValue: string | null | undefined | PromiseLike<string | null | undefined>;
    try {
      tokenValue = typeof token === 'function' ? token() : token;
    } catch (err) {
      this.drop(new HeraldConnectionError('token', 'token provider threw', { cause: err }));
      return;
    }
    const ctor = this.config.EventSource ?? getGlobalEventSource();
    if (ctor && !isPromiseLike(tokenValue)) {
      this.createStream(gen, ctor, tokenValue);
      return;
    }
    // Async path: token provider returned a promise and/or the eventsource package must be loaded.
    // Arm the liveness timer so a hanging token provider cannot stall us forever.
    this.armLiveness(gen);
    Promise.all([tokenValue, ctor ?? loadEventSourcePackage()]).then(
      ([t, c]) => {
        if (gen === this.generation && !this.stopped) this.createStream(gen, c, t);
      },
      (err: unknown) => {
        if (gen !== this.generation || this.stopped) return;
        const kind = ctor || !isPromiseLike(tokenValue) ? 'network' : 'token';
        this.drop(new HeraldConnectionError(kind, 'could not start the EventSource', { cause: err }));
      },
    );
  }

  private createStream(gen: number, Ctor: EventSourceConstructor, token: string | null | undefined): void {
    const url = buildSubscribeUrl(
      this.config.url,
      {
        userId: this.config.userId,
        username: this.config.username,
        channels: this.config.channels,
        lastEventId: this.sink.lastEventId(),
        token: token ?? undefined,
        params: this.config.params,
      },
      this.config.path,
    );
    let es: EventSourceLike;
    try {
      es = this.config.eventSourceInit ? new Ctor(url, this.config.eventSourceInit) : new Ctor(url);
    } catch (err) {
      this.drop(new HeraldConnectionError('network', 'EventSource constructor threw', { cause: err }));
      return;
    }
    this.es = es;
    this.esListeners = new Map();
    this.attach(es, gen, 'open');
    this.attach(es, gen, 'error');
    for (const name of this.names) this.attach(es, gen, name);
    this.armLiveness(gen);
  }

  private attach(es: EventSourceLike, gen: number, name: string): void {
    if (this.esListeners.has(name)) return;
    const listener = (ev: EventSourceMessageLike) => {
      if (gen !== this.generation || this.stopped) return;
      if (name === 'open') this.handleOpen(gen);
      else if (name === 'error') this.handleError(ev);
      else this.handleMessage(gen, name, ev);
    };
    this.esListeners.set(name, listener);
    es.addEventListener(name, listener);
  }

  /** Close the current EventSource (if any) and forget its listeners. */
  private detach(): void {
    this.generation++;
    this.clearLiveness();
    const es = this.es;
    this.es = undefined;
    if (!es) return;
    for (const [name, l] of this.esListeners) es.removeEventListener(name, l);
    this.esListeners = new Map();
    try {
      es.close();
    } catch {
      /* ignore */
    }
  }

  // ---------------------------------------------------------------- events

  private handleOpen(gen: number): void {
    this.setStatus('open', { error: undefined });
    this.armLiveness(gen);
  }

  private handleError(ev: EventSourceMessageLike): void {
    const status = typeof ev?.code === 'number' && ev.code > 0 ? ev.code : undefined;
    if (status !== undefined) {
      const err = new HeraldConnectionError('http', `subscribe failed with HTTP ${status}`, { status });
      const action = this.decide({ type: 'http', status }, () => decideOnHttpStatus(status, this.policyContext()));
      if (action === 'stop') return this.stop(`http_${status}`, err);
      return this.drop(err);
    }
    const msg = typeof ev?.message === 'string' && ev.message ? `: ${ev.message}` : '';
    this.drop(new HeraldConnectionError('network', `connection lost${msg}`));
  }

  private handleMessage(gen: number, name: string, ev: EventSourceMessageLike): void {
    this.armLiveness(gen);
    // Data is flowing on this stream: the connection is good, start backoff over.
    this.config.backoff.reset();
    if (this.machine.status !== 'open') this.setStatus('open', { error: undefined });

    const raw = typeof ev.data === 'string' ? ev.data : ev.data == null ? '' : String(ev.data);
    const data = parseData(raw);
    // EventSource's lastEventId persists across events without an id, and is
    // also updated by events nobody listens to (the browser skips those). So
    // events that never carry an id of their own (heartbeat, disconnected) and
    // `connected` (whose id, when present, is a resume position, not an event)
    // report no id; the stream's last id they show is still recorded as the
    // resume point. Published events, `reset` and presence events carry ids.
    const streamId = ev.lastEventId || undefined;
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
    else this.drop(err, advice === 'now' ? 0 : undefined);
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
