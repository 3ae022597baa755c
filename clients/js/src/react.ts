/**
 * @herald/client/react: React hooks over {@link HeraldClient}.
 *
 * The hooks are thin: the client owns reconnects, liveness and tab sharing.
 * A hook opens its client in an effect and closes it in the effect's cleanup,
 * so React strict mode's mount/unmount/mount leaves exactly one open client.
 * The client is re-created only when a connection-relevant option changes
 * (url, transport, path, wsPath, userId, username, channels, string token, params, backoff,
 * livenessTimeout, heartbeatInterval, shareConnection, shareKey, events, envelope, sseReader,
 * headers, credentials, the names of `eventHandlers`); callbacks and constructors are read
 * from the latest render.
 *
 * The seeds' shapes work as they are (see docs/guides/migrating.md):
 * - `useSSE('/api/sse')` → `{messages, connectionStatus, connectionId}` (seed 001);
 * - `useSSE({eventHandlers: {notification: fn, ping: fn}})` → `{isConnected, error (a string),
 *   lastEvent, reconnect, closeConnection}` (seed 004; `ping` is the hub's `heartbeat`);
 * - `useEventSource({userId, username, debug})` → `{connected, addHandler, removeHandler}`
 *   (seed 002; `removeHandler(name)` removes every handler of that name).
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { HeraldClient, type HeraldClientOptions } from './client.js';
import type { AnyHeraldEvent, ClientState, ConnectionStatus, EventMap, HeraldEvent } from './types.js';
import { normalizeChannels } from './url.js';

export { HeraldClient } from './client.js';
export type { HeraldClientOptions } from './client.js';

/** Named events the hooks listen to when `events` is not given (the publisher helpers' names); they matter only where events arrive by name (a hub older than `envelope=1`). */
export const DEFAULT_HOOK_EVENTS: readonly string[] = ['notification', 'alert', 'update'];

/** Hook options: client options with an optional `url` (default `''` = same origin). */
export type HeraldHookOptions = Omit<HeraldClientOptions, 'url' | 'autoConnect'> & {
  url?: string;
  /** Set false to not connect (status `closed`). Default true. */
  enabled?: boolean;
  /** Log status changes and events with `console.debug` (seed 002's `debug`). Default false. */
  debug?: boolean;
};

/** Stable identity of the options that require a new connection when they change. */
export function connectionKey(options: HeraldHookOptions): string {
  return JSON.stringify([
    options.url ?? '',
    options.transport ?? 'sse',
    options.path ?? null,
    options.wsPath ?? null,
    options.userId ?? null,
    options.username ?? null,
    normalizeChannels(options.channels),
    typeof options.token === 'string' ? options.token : typeof options.token === 'function' ? 'fn' : null,
    options.params ?? null,
    options.backoff ?? null,
    options.livenessTimeout ?? null,
    options.heartbeatInterval ?? null,
    options.shareConnection ?? null,
    options.shareKey ?? null,
    options.events ?? null,
    options.envelope ?? null,
    options.sseReader ?? null,
    options.headers ?? null,
    options.credentials ?? null,
  ]);
}

function toClientOptions(options: HeraldHookOptions): HeraldClientOptions {
  const { enabled: _enabled, debug: _debug, ...rest } = options;
  // Effects run only in the browser, so the hook always connects from its effect.
  return { ...rest, url: options.url ?? '', autoConnect: true };
}

/** `console.debug` for the `debug` option. */
function debugLog(...args: unknown[]): void {
  (globalThis as { console?: { debug?: (...a: unknown[]) => void } }).console?.debug?.('[herald]', ...args);
}

/**
 * The lifecycle shared by the hooks: create the client in an effect, let the
 * caller attach listeners, close it in the cleanup.
 */
function useClientLifecycle<E extends EventMap>(
  options: HeraldHookOptions,
  generation: number,
  attach: (client: HeraldClient<E>) => () => void,
): HeraldClient<E> | null {
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const attachRef = useRef(attach);
  attachRef.current = attach;
  const [client, setClient] = useState<HeraldClient<E> | null>(null);
  const enabled = options.enabled !== false;
  const key = connectionKey(options);

  useEffect(() => {
    if (!enabled) return undefined;
    const c = new HeraldClient<E>(toClientOptions(optionsRef.current));
    const detach = attachRef.current(c);
    setClient(c);
    return () => {
      detach();
      c.close();
      setClient((cur) => (cur === c ? null : cur));
    };
  }, [key, enabled, generation]);

  return client;
}

/**
 * The bare client for custom wiring. `null` until the effect ran (and when
 * `enabled` is false).
 */
export function useHeraldClient<E extends EventMap = EventMap>(options: HeraldHookOptions = {}): HeraldClient<E> | null {
  return useClientLifecycle<E>(options, 0, () => () => {});
}

// ---------------------------------------------------------------- useSSE

/** A handler of `eventHandlers`: the event's data, then the whole event. */
export type SSEEventHandler = (data: any, event: HeraldEvent) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface UseSSEOptions<E extends EventMap = EventMap> extends HeraldHookOptions {
  /** Keep at most this many events in `events` (oldest dropped). Default 100. */
  maxEvents?: number;
  /** Also collect `heartbeat` and `connected` in `events`. Default false. */
  includeSystemEvents?: boolean;
  /** Called for every collected event (latest callback is used; no reconnect on change). */
  onEvent?: (event: AnyHeraldEvent<E>) => void;
  /**
   * Handlers by event name (seed 004): `{notification: (data) => toast(data.title)}`. `ping` is
   * called for the hub's `heartbeat`. The latest handlers are used (no reconnect when they
   * change); heartbeats reach them even though `events` skips them.
   */
  eventHandlers?: Record<string, SSEEventHandler>;
}

/** One collected event: the client's event, with `type` (the seeds' name for `event`). */
export type SSEMessage<E extends EventMap = EventMap> = AnyHeraldEvent<E> & { type: string };

/** Seed 001's `connectionStatus`. */
export type SSEConnectionStatus = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

export interface UseSSEResult<E extends EventMap = EventMap> {
  status: ConnectionStatus;
  connectionId: string | undefined;
  /** The most recent collected event, or null. */
  lastEvent: SSEMessage<E> | null;
  /** Collected events, oldest first, at most `maxEvents`. */
  events: SSEMessage<E>[];
  /** The same array as `events` (seed 001's name; each has `type` and `data`). */
  messages: SSEMessage<E>[];
  /** `status` as seed 001 names it: `open` is `connected`, `closed` is `disconnected`. */
  connectionStatus: SSEConnectionStatus;
  /** True while the status is `open` (seed 004). */
  isConnected: boolean;
  /** The last connection error's message, or null (seed 004 renders it as text). */
  error: string | null;
  /** The last connection error itself (a `HeraldConnectionError`, `HeraldAuthError`...). */
  lastError: Error | undefined;
  /** Reconnect now; after `close()` this opens a new client. */
  reconnect: () => void;
  /** Close the connection (until `reconnect()` or an option change). */
  close: () => void;
  /** Alias of `close` (seed 004). */
  closeConnection: () => void;
  /** The underlying client (null before the first effect). */
  client: HeraldClient<E> | null;
}

const NOISE: ReadonlySet<string> = new Set(['heartbeat', 'connected']);

const SEED_STATUS: Record<ConnectionStatus, SSEConnectionStatus> = {
  connecting: 'connecting',
  open: 'connected',
  reconnecting: 'reconnecting',
  closed: 'disconnected',
};

/**
 * Subscribe and collect events. Every event the hub sends arrives (the client asks for
 * `envelope=1`); against a hub older than that, named events arrive for the names in
 * `options.events` (default `['notification', 'alert', 'update']`) and `eventHandlers`, plus
 * unnamed `message`s and the system events.
 *
 * `useSSE()` connects to the same origin; `useSSE('/api/sse')` or `useSSE(url, options)` to
 * that URL.
 */
export function useSSE<E extends EventMap = EventMap>(urlOrOptions?: string | UseSSEOptions<E>, more?: UseSSEOptions<E>): UseSSEResult<E> {
  const options: UseSSEOptions<E> =
    typeof urlOrOptions === 'string' ? { ...more, url: urlOrOptions } : { ...urlOrOptions, ...more };
  const enabled = options.enabled !== false;
  const [state, setState] = useState<Pick<ClientState, 'status' | 'connectionId' | 'error'>>(() => ({
    status: enabled ? 'connecting' : 'closed',
    connectionId: undefined,
    error: undefined,
  }));
  // Stored untyped; the generic union type is applied on return.
  const [events, setEvents] = useState<HeraldEvent[]>([]);
  const [lastEvent, setLastEvent] = useState<HeraldEvent | null>(null);
  const [generation, setGeneration] = useState(0);
  const clientRef = useRef<HeraldClient<E> | null>(null);
  const maxRef = useRef(options.maxEvents ?? 100);
  maxRef.current = Math.max(0, options.maxEvents ?? 100);
  const systemRef = useRef(!!options.includeSystemEvents);
  systemRef.current = !!options.includeSystemEvents;
  const onEventRef = useRef(options.onEvent);
  onEventRef.current = options.onEvent;
  const handlersRef = useRef(options.eventHandlers);
  handlersRef.current = options.eventHandlers;
  const debugRef = useRef(!!options.debug);
  debugRef.current = !!options.debug;

  // Names of `eventHandlers` are listened to too (for hubs without `envelope=1`); `ping` is `heartbeat`.
  const handlerNames = Object.keys(options.eventHandlers ?? {})
    .filter((n) => n !== 'ping' && n !== '*')
    .sort();
  const baseEvents = options.events ?? DEFAULT_HOOK_EVENTS;
  const hookOptions: HeraldHookOptions = {
    ...options,
    events: handlerNames.length ? [...new Set([...baseEvents, ...handlerNames])] : baseEvents,
  };
  const client = useClientLifecycle<E>(hookOptions, generation, (c) => {
    clientRef.current = c;
    setState({ status: c.status, connectionId: c.connectionId, error: c.state.error });
    const offState = c.onStateChange((s, prev) => {
      if (debugRef.current && s.status !== prev.status) debugLog('status', prev.status, '->', s.status, s.error ?? '');
      setState({ status: s.status, connectionId: s.connectionId, error: s.error });
    });
    const offEvents = c.on('*', (data, typed) => {
      const ev = typed as HeraldEvent;
      if (debugRef.current) debugLog('event', ev.event, data, ev.id ?? '');
      const handlers = handlersRef.current;
      if (handlers) {
        const h = handlers[ev.event] ?? (ev.event === 'heartbeat' ? handlers.ping : undefined);
        if (typeof h === 'function') h(data, ev);
      }
      if (!systemRef.current && NOISE.has(ev.event)) return;
      const message = { ...ev, type: ev.event };
      const max = maxRef.current;
      setLastEvent(message);
      setEvents((prev) => {
        if (max === 0) return prev.length ? [] : prev;
        const next = prev.length >= max ? prev.slice(prev.length - max + 1) : prev.slice();
        next.push(message);
        return next;
      });
      onEventRef.current?.(message as unknown as AnyHeraldEvent<E>);
    });
    return () => {
      offState();
      offEvents();
      if (clientRef.current === c) clientRef.current = null;
    };
  });

  useEffect(() => {
    if (!enabled) setState((s) => (s.status === 'closed' ? s : { status: 'closed', connectionId: undefined, error: s.error }));
  }, [enabled]);

  const reconnect = useCallback(() => {
    const c = clientRef.current;
    if (c && !c.closed) c.reconnect();
    else setGeneration((g) => g + 1);
  }, []);
  const close = useCallback(() => {
    clientRef.current?.close();
  }, []);

  const collected = events as SSEMessage<E>[];
  return {
    status: state.status,
    connectionId: state.connectionId,
    lastEvent: lastEvent as SSEMessage<E> | null,
    events: collected,
    messages: collected,
    connectionStatus: SEED_STATUS[state.status],
    isConnected: state.status === 'open',
    error: state.error ? state.error.message : null,
    lastError: state.error,
    reconnect,
    close,
    closeConnection: close,
    client,
  };
}

// ---------------------------------------------------------------- useEventSource

export type EventSourceHandler = (data: any, event: HeraldEvent) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface UseEventSourceResult {
  /** True while the status is `open`. */
  connected: boolean;
  status: ConnectionStatus;
  /** Register a handler for an event name (works before the connection exists). */
  addHandler: (event: string, handler: EventSourceHandler) => void;
  /** Remove one handler, or, without `handler`, every handler of `event` (seed 002's form). */
  removeHandler: (event: string, handler?: EventSourceHandler) => void;
  client: HeraldClient | null;
}

/**
 * Drop-in for the common hand-written hook (seed 002):
 * `const { connected, addHandler, removeHandler } = useEventSource({ userId, username, debug })`.
 * Handlers get `(data, event)`; `addHandler`/`removeHandler` are stable;
 * `removeHandler(name)` removes every handler of the name, so
 * `useEffect(() => { addHandler('n', h); return () => removeHandler('n'); }, [...])` is right
 * under strict mode's mount, unmount, mount. `ping` is the hub's `heartbeat`.
 */
export function useEventSource(options: HeraldHookOptions = {}): UseEventSourceResult {
  const enabled = options.enabled !== false;
  const registry = useRef(new Map<string, Set<EventSourceHandler>>());
  const attached = useRef<{ client: HeraldClient; names: Set<string> } | null>(null);
  const [status, setStatus] = useState<ConnectionStatus>(enabled ? 'connecting' : 'closed');
  const debugRef = useRef(!!options.debug);
  debugRef.current = !!options.debug;

  const attachName = (c: HeraldClient, names: Set<string>, name: string) => {
    if (names.has(name)) return;
    names.add(name);
    c.on(name === 'ping' ? 'heartbeat' : name, (data: unknown, ev: HeraldEvent) => {
      if (debugRef.current) debugLog('event', ev.event, data, ev.id ?? '');
      for (const h of [...(registry.current.get(name) ?? [])]) h(data, ev);
    });
  };

  const client = useClientLifecycle(options, 0, (c) => {
    const names = new Set<string>();
    attached.current = { client: c, names };
    for (const name of registry.current.keys()) attachName(c, names, name);
    setStatus(c.status);
    const off = c.onStatusChange((s, prev) => {
      if (debugRef.current) debugLog('status', prev, '->', s);
      setStatus(s);
    });
    return () => {
      off();
      if (attached.current?.client === c) attached.current = null;
    };
  });

  useEffect(() => {
    if (!enabled) setStatus('closed');
  }, [enabled]);

  const addHandler = useCallback((event: string, handler: EventSourceHandler) => {
    let set = registry.current.get(event);
    if (!set) registry.current.set(event, (set = new Set()));
    set.add(handler);
    const a = attached.current;
    if (a && !a.client.closed) attachName(a.client, a.names, event);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const removeHandler = useCallback((event: string, handler?: EventSourceHandler) => {
    const set = registry.current.get(event);
    if (!set) return;
    if (handler === undefined) set.clear();
    else set.delete(handler);
    if (set.size === 0) registry.current.delete(event);
  }, []);

  return { connected: status === 'open', status, addHandler, removeHandler, client };
}
