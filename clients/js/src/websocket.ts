/**
 * The WebSocket transport (`GET /api/ws`): the minimal WebSocket surface the client uses, how a
 * constructor is found (an injected one, e.g. npm `ws` in Node, else the global one of browsers,
 * Deno and Node >= 22), and the {@link StreamDriver} that reads the hub's frames.
 *
 * The hub sends one JSON text message per event, `{"id"?, "event", "data"}`, `data` being the
 * published JSON value or a text payload as a JSON string (docs/api.md). Everything else (resume
 * ids, `connected`/`disconnected`/`reset`, the reconnect advice, backoff, liveness) is the shared
 * {@link Connection}'s, exactly as for SSE.
 */
import { Connection, sseDriver, type ConnectionConfig, type StreamCallbacks, type StreamDriver, type StreamHandle, type TransportSink } from './connection.js';
import { buildSubscribeUrl, joinUrl, type SubscribeUrlParams } from './url.js';

export const DEFAULT_WS_PATH = '/api/ws';

export interface WebSocketEventLike {
  readonly type?: string;
  /** `message`: the frame (a string for text frames). */
  readonly data?: unknown;
  /** `close`: the close code. */
  readonly code?: number;
  readonly reason?: string;
  /** `error` from npm `ws` (e.g. `Unexpected server response: 403`); browsers give none. */
  readonly message?: string;
}

export interface WebSocketLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: WebSocketEventLike) => void): void;
  removeEventListener(type: string, listener: (event: WebSocketEventLike) => void): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the browser's, or one with its signature (npm `ws` takes options third). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: Record<string, unknown>) => WebSocketLike;

/** The global WebSocket constructor, if there is one. */
export function getGlobalWebSocket(): WebSocketConstructor | undefined {
  const ctor = (globalThis as { WebSocket?: unknown }).WebSocket;
  return typeof ctor === 'function' ? (ctor as WebSocketConstructor) : undefined;
}

/**
 * `http(s)://` to `ws(s)://`. A relative URL is resolved against the page's location (browsers),
 * since older browsers' WebSocket constructors refuse relative URLs and `http` schemes.
 */
export function toWebSocketUrl(url: string): string {
  if (/^wss?:\/\//i.test(url)) return url;
  if (/^https?:\/\//i.test(url)) return url.replace(/^http/i, 'ws');
  const href = (globalThis as { location?: { href?: string } }).location?.href;
  if (typeof href !== 'string') return url;
  const u = new URL(url, href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

/**
 * The WebSocket subscribe URL: `ws(s)://{base}{wsPath}?<the SSE query>`. A base that ends with the
 * SSE path (`https://x/api/sse`) has it replaced, so one `url` option serves both transports.
 */
export function buildWebSocketUrl(base: string, params: SubscribeUrlParams, wsPath = DEFAULT_WS_PATH, ssePath?: string): string {
  let root = base;
  if (ssePath) {
    const { url, query } = joinUrl(base, ssePath);
    const p = '/' + ssePath.replace(/^\/+/, '');
    const bare = base.trim().split('#')[0]!.split('?')[0]!.replace(/\/+$/, '');
    if (bare === url && bare.endsWith(p)) root = bare.slice(0, bare.length - p.length) + (query ? `?${query}` : '');
  }
  return toWebSocketUrl(buildSubscribeUrl(root, params, wsPath));
}

/** Reads the HTTP status out of a refused handshake's error, where the implementation says it. */
function refusedStatus(message: string | undefined): number | undefined {
  const m = typeof message === 'string' ? /Unexpected server response: (\d{3})/.exec(message) : null;
  return m ? Number(m[1]) : undefined;
}

export interface WebSocketDriverConfig {
  url: string;
  /** The SSE path (stripped from a `url` that ends with it). */
  path: string;
  wsPath: string;
  WebSocket?: WebSocketConstructor | undefined;
  /** Third constructor argument (npm `ws`: `{headers}`, `{origin}`, ...). */
  webSocketOptions?: Record<string, unknown> | undefined;
  /** `false`: dispatch only the names someone listens to, as an SSE EventSource without `envelope=1` would. */
  envelope?: boolean | undefined;
}

const noop = () => {};

export class WebSocketDriver implements StreamDriver<WebSocketConstructor> {
  readonly kind = 'websocket';
  readonly label = 'WebSocket';

  constructor(private readonly config: WebSocketDriverConfig) {}

  factory(): WebSocketConstructor {
    const ctor = this.config.WebSocket ?? getGlobalWebSocket();
    if (!ctor) throw new Error('No global WebSocket: pass the `WebSocket` option (e.g. the `ws` package in Node < 22).');
    return ctor;
  }

  connect(Ctor: WebSocketConstructor, query: SubscribeUrlParams, names: ReadonlySet<string>, cb: StreamCallbacks): StreamHandle {
    const url = buildWebSocketUrl(this.config.url, query, this.config.wsPath, this.config.path);
    const opts = this.config.webSocketOptions;
    const ws = opts ? new Ctor(url, undefined, opts) : new Ctor(url);
    const onOpen = () => cb.open();
    const onMessage = (ev: WebSocketEventLike) => {
      if (typeof ev.data !== 'string') return cb.alive(undefined); // the hub sends no binary frames
      let frame: { id?: unknown; event?: unknown; data?: unknown };
      try {
        frame = JSON.parse(ev.data) as typeof frame;
      } catch {
        return cb.alive(undefined);
      }
      if (!frame || typeof frame !== 'object' || typeof frame.event !== 'string') return cb.alive(undefined);
      const id = typeof frame.id === 'string' && frame.id ? frame.id : undefined;
      // Every event is dispatched, as over SSE with `envelope=1` (the default), so `on('*')` sees
      // the same events whichever transport runs; with `envelope: false` only listened names.
      if (this.config.envelope === false && !names.has(frame.event)) return cb.alive(id);
      const data = frame.data === undefined ? '' : frame.data;
      const raw = typeof data === 'string' ? data : JSON.stringify(data);
      cb.message(frame.event, raw, data, id);
    };
    const onError = (ev: WebSocketEventLike) => {
      const message = typeof ev?.message === 'string' && ev.message ? ev.message : undefined;
      cb.fail(refusedStatus(message), message);
    };
    // A close without a `disconnected` first: the hub died, a proxy cut it, or the hub dropped a
    // slow reader. Reconnect with backoff.
    const onClose = (ev: WebSocketEventLike) => cb.fail(undefined, `socket closed (code ${ev?.code ?? 'none'})`);
    ws.addEventListener('open', onOpen);
    ws.addEventListener('message', onMessage);
    ws.addEventListener('error', onError);
    ws.addEventListener('close', onClose);
    // npm `ws` reports an aborted handshake as an `error` event and throws when nobody listens.
    ws.addEventListener('error', noop);
    return {
      listen: noop, // every frame arrives; `names` (a live set) filters them
      close: () => {
        ws.removeEventListener('open', onOpen);
        ws.removeEventListener('message', onMessage);
        ws.removeEventListener('error', onError);
        ws.removeEventListener('close', onClose);
        try {
          ws.close(1000);
        } catch {
          /* ignore */
        }
      },
    };
  }
}

export interface WebSocketConnectionConfig extends ConnectionConfig, Omit<WebSocketDriverConfig, 'url' | 'path'> {}

/** The WebSocket connection: a {@link Connection} over WebSocket streams. */
export class WebSocketConnection extends Connection {
  constructor(config: WebSocketConnectionConfig, sink: TransportSink) {
    super(config, sink, [new WebSocketDriver(config)]);
  }
}

/** `transport: "auto"`: SSE first, a WebSocket when SSE delivers nothing (see README). */
export class AutoConnection extends Connection {
  constructor(config: WebSocketConnectionConfig, sink: TransportSink) {
    super(config, sink, [sseDriver(config), new WebSocketDriver(config)]);
  }
}
