/**
 * @herald/client/react: React hooks over {@link HeraldClient}.
 *
 * The hooks are thin: the client owns reconnects, liveness and tab sharing.
 * A hook opens its client in an effect and closes it in the effect's cleanup,
 * so React strict mode's mount/unmount/mount leaves exactly one open client.
 * The client is re-created only when a connection-relevant option changes
 * (url, transport, path, wsPath, userId, username, channels, string token, params, backoff,
 * livenessTimeout, heartbeatInterval, shareConnection, shareKey, events); callbacks and
 * constructors are read from the latest render.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { HeraldClient, type HeraldClientOptions } from './client.js';
import type { AnyHeraldEvent, ClientState, ConnectionStatus, EventMap, HeraldEvent } from './types.js';
import { normalizeChannels } from './url.js';

export { HeraldClient } from './client.js';
export type { HeraldClientOptions } from './client.js';

/** Named events the hooks listen to when `events` is not given (the publisher helpers' names). */
export const DEFAULT_HOOK_EVENTS: readonly string[] = ['notification', 'alert', 'update'];

/** Hook options: client options with an optional `url` (default `''` = same origin). */
export type HeraldHookOptions = Omit<HeraldClientOptions, 'url'> & {
  url?: string;
  /** Set false to not connect (status `closed`). Default true. */
  enabled?: boolean;
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
  ]);
}

function toClientOptions(options: HeraldHookOptions): HeraldClientOptions {
  const { enabled: _enabled, ...rest } = options;
  return { ...rest, url: options.url ?? '' };
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
export function useHeraldClient<E extends EventMap = EventMap>(options: HeraldHookOptions): HeraldClient<E> | null {
  return useClientLifecycle<E>(options, 0, () => () => {});
}

// ---------------------------------------------------------------- useSSE

export interface UseSSEOptions<E extends EventMap = EventMap> extends HeraldHookOptions {
  /** Keep at most this many events in `events` (oldest dropped). Default 100. */
  maxEvents?: number;
  /** Also collect `heartbeat` and `connected` in `events`. Default false. */
  includeSystemEvents?: boolean;
  /** Called for every collected event (latest callback is used; no reconnect on change). */
  onEvent?: (event: AnyHeraldEvent<E>) => void;
}

export interface UseSSEResult<E extends EventMap = EventMap> {
  status: ConnectionStatus;
  connectionId: string | undefined;
  /** The most recent collected event, or null. */
  lastEvent: AnyHeraldEvent<E> | null;
  /** Collected events, oldest first, at most `maxEvents`. */
  events: AnyHeraldEvent<E>[];
  error: Error | undefined;
  /** Reconnect now; after `close()` this opens a new client. */
  reconnect: () => void;
  /** Close the connection (until `reconnect()` or an option change). */
  close: () => void;
  /** The underlying client (null before the first effect). */
  client: HeraldClient<E> | null;
}

const NOISE: ReadonlySet<string> = new Set(['heartbeat', 'connected']);

/**
 * Subscribe and collect events. Named events are received for the names in
 * `options.events` (default `['notification', 'alert', 'update']`) plus
 * unnamed `message`s and the system events.
 */
export function useSSE<E extends EventMap = EventMap>(options: UseSSEOptions<E>): UseSSEResult<E> {
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

  const hookOptions: HeraldHookOptions = { ...options, events: options.events ?? DEFAULT_HOOK_EVENTS };
  const client = useClientLifecycle<E>(hookOptions, generation, (c) => {
    clientRef.current = c;
    setState({ status: c.status, connectionId: c.connectionId, error: c.state.error });
    const offState = c.onStateChange((s) => setState({ status: s.status, connectionId: s.connectionId, error: s.error }));
    const offEvents = c.on('*', (_data, typed) => {
      const ev = typed as HeraldEvent;
      if (!systemRef.current && NOISE.has(ev.event)) return;
      const max = maxRef.current;
      setLastEvent(ev);
      setEvents((prev) => {
        if (max === 0) return prev.length ? [] : prev;
        const next = prev.length >= max ? prev.slice(prev.length - max + 1) : prev.slice();
        next.push(ev);
        return next;
      });
      onEventRef.current?.(typed);
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

  return {
    ...state,
    lastEvent: lastEvent as AnyHeraldEvent<E> | null,
    events: events as AnyHeraldEvent<E>[],
    reconnect,
    close,
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
  removeHandler: (event: string, handler: EventSourceHandler) => void;
  client: HeraldClient | null;
}

/**
 * Drop-in for the common hand-written hook:
 * `const { connected, addHandler, removeHandler } = useEventSource({ userId, username })`.
 * Handlers get `(data, event)`; `addHandler`/`removeHandler` are stable.
 */
export function useEventSource(options: HeraldHookOptions): UseEventSourceResult {
  const enabled = options.enabled !== false;
  const registry = useRef(new Map<string, Set<EventSourceHandler>>());
  const attached = useRef<{ client: HeraldClient; names: Set<string> } | null>(null);
  const [status, setStatus] = useState<ConnectionStatus>(enabled ? 'connecting' : 'closed');

  const attachName = (c: HeraldClient, names: Set<string>, name: string) => {
    if (names.has(name)) return;
    names.add(name);
    c.on(name, (data: unknown, ev: HeraldEvent) => {
      for (const h of [...(registry.current.get(name) ?? [])]) h(data, ev);
    });
  };

  const client = useClientLifecycle(options, 0, (c) => {
    const names = new Set<string>();
    attached.current = { client: c, names };
    for (const name of registry.current.keys()) attachName(c, names, name);
    setStatus(c.status);
    const off = c.onStatusChange((s) => setStatus(s));
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

  const removeHandler = useCallback((event: string, handler: EventSourceHandler) => {
    const set = registry.current.get(event);
    if (!set) return;
    set.delete(handler);
    if (set.size === 0) registry.current.delete(event);
  }, []);

  return { connected: status === 'open', status, addHandler, removeHandler, client };
}
