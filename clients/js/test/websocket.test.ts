/**
 * The WebSocket transport's state machine with a fake WebSocket (fake timers): the URL, frame
 * dispatch, reconnect on close with the last id, the `reconnect` advice, refused handshakes, the
 * heartbeat timeout, and `transport: "auto"` falling back from SSE and sticking to what works.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient, type HeraldClientOptions } from '../src/client.js';
import type { ConnectionStatus, HeraldEvent } from '../src/types.js';
import { buildWebSocketUrl, toWebSocketUrl } from '../src/websocket.js';
import { createFakeEventSource, type FakeEventSourceClass } from './helpers/fake-eventsource.js';
import { createFakeWebSocket, type FakeWebSocketClass, type FakeWebSocketInstance } from './helpers/fake-websocket.js';

let WS: FakeWebSocketClass;
let ES: FakeEventSourceClass;
const clients: HeraldClient<any>[] = [];

function make(opts: Partial<HeraldClientOptions> = {}) {
  const c = new HeraldClient({
    url: 'http://127.0.0.1:8080',
    transport: 'websocket',
    WebSocket: WS,
    EventSource: ES,
    shareConnection: false,
    backoff: { initialDelay: 1000, maxDelay: 8000, multiplier: 2, jitter: 0 },
    ...opts,
  });
  clients.push(c);
  return c;
}

function ws(i?: number): FakeWebSocketInstance {
  const inst = i === undefined ? WS.last : WS.instances[i];
  if (!inst) throw new Error(`no WebSocket #${i ?? 'last'}`);
  return inst;
}

/** Open the last socket and send its `connected` frame. */
function connect(id?: string, connectionId = 'c1') {
  ws().open();
  ws().frame({ ...(id ? { id } : {}), event: 'connected', data: { connectionId, userId: 'alice' } });
}

beforeEach(() => {
  WS = createFakeWebSocket();
  ES = createFakeEventSource();
  vi.useFakeTimers();
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  vi.useRealTimers();
});

describe('WebSocket URL', () => {
  it('maps http to ws, appends /api/ws and the SSE query', () => {
    make({ userId: 'alice', username: 'Al Ice', channels: ['orders', 'news'], token: 'jwt', lastEventId: 'e-1' });
    expect(ES.instances).toHaveLength(0);
    expect(ws().url).toBe('ws://127.0.0.1:8080/api/ws?userId=alice&username=Al%20Ice&channels=orders,news&lastEventId=e-1&token=jwt');
  });

  it('replaces a trailing SSE path, keeps https as wss, passes webSocketOptions', () => {
    make({ url: 'https://h.example/prefix/api/sse?x=1', webSocketOptions: { origin: 'https://h.example' } });
    expect(ws().url).toBe('wss://h.example/prefix/api/ws?x=1');
    expect(ws().options).toEqual({ origin: 'https://h.example' });
    expect(buildWebSocketUrl('http://a/b', {}, '/ws', '/api/sse')).toBe('ws://a/b/ws');
    expect(toWebSocketUrl('wss://a/x')).toBe('wss://a/x');
  });

  it('needs a WebSocket for transport "websocket"; "auto" without one is SSE only', () => {
    expect(() => new HeraldClient({ url: 'http://x', transport: 'websocket', shareConnection: false })).toThrow(/WebSocket/);
    const c = make({ transport: 'auto', WebSocket: undefined });
    expect(c.activeTransport).toBe('sse');
    expect(() => make({ transport: 'carrier-pigeon' as never })).toThrow(/unknown transport/);
  });
});

describe('WebSocket frames', () => {
  it('dispatches JSON and text payloads to the same handlers as SSE, with ids', () => {
    const c = make({ userId: 'alice' });
    const got: HeraldEvent[] = [];
    c.on('tick', (_d, ev) => got.push(ev));
    const statuses: ConnectionStatus[] = [];
    c.onStatusChange((s) => statuses.push(s));
    expect(c.activeTransport).toBe('websocket');
    connect('e-10');
    expect(c.status).toBe('open');
    expect(c.connectionId).toBe('c1');
    // connected's id is a resume position, not an event id.
    expect(c.lastEventId).toBe('e-10');
    ws().frame({ id: 'e-11', event: 'tick', data: { n: 1 } });
    ws().frame({ id: 'e-12', event: 'tick', data: '42' });
    ws().frame({ id: 'e-12', event: 'tick', data: 'duplicate' });
    ws().frame({ id: 'e-13', event: 'other', data: 1 }); // nobody listens: not dispatched, but a position
    ws().frame('not json');
    expect(got.map((e) => [e.id, e.data, e.raw])).toEqual([
      ['e-11', { n: 1 }, '{"n":1}'],
      // A text payload stays a string (SSE would parse "42" as JSON).
      ['e-12', '42', '42'],
    ]);
    expect(c.lastEventId).toBe('e-13');
    expect(statuses).toEqual(['open']);
  });
});

describe('WebSocket reconnects', () => {
  it('reconnects with backoff after the socket closes, resuming from the last id received', () => {
    const c = make({ userId: 'alice' });
    c.on('tick', () => {});
    connect('e-1');
    ws().frame({ id: 'e-2', event: 'tick', data: 1 });
    ws().serverClose(1006);
    expect(c.status).toBe('reconnecting');
    expect(c.state.error).toMatchObject({ kind: 'network', message: expect.stringContaining('1006') });
    expect(WS.instances).toHaveLength(1);
    vi.advanceTimersByTime(999);
    expect(WS.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(WS.instances).toHaveLength(2);
    expect(ws().query.get('lastEventId')).toBe('e-2');
    // Failing again before anything arrives doubles the delay; data on a stream resets it.
    ws().serverClose();
    vi.advanceTimersByTime(1999);
    expect(WS.instances).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(WS.instances).toHaveLength(3);
    connect(undefined, 'c2');
    expect(c.status).toBe('open');
    expect(c.connectionId).toBe('c2');
    ws().serverClose();
    vi.advanceTimersByTime(1000);
    expect(WS.instances).toHaveLength(4);
  });

  it('follows disconnected: "now" at once, "no" stops for good', () => {
    const c = make();
    connect();
    ws().frame({ event: 'disconnected', data: { reason: 'timeout', reconnect: 'now' } });
    expect(ws(0).closedWith).toBe(1000);
    vi.advanceTimersByTime(0);
    expect(WS.instances).toHaveLength(2);
    connect();
    ws().frame({ event: 'disconnected', data: { reason: 'banned', reconnect: 'no' } });
    expect(c.status).toBe('closed');
    expect(c.state.closeReason).toBe('banned');
    expect(ws().closed).toBe(true);
    vi.advanceTimersByTime(60_000);
    expect(WS.instances).toHaveLength(2);
  });

  it('new_token: reconnects with a fresh token from a function, stops with a static one', () => {
    let n = 0;
    make({ token: () => `t${++n}` });
    connect();
    ws().frame({ event: 'disconnected', data: { reason: 'token_expired', reconnect: 'new_token' } });
    vi.advanceTimersByTime(1000);
    expect(ws().query.get('token')).toBe('t2');

    const fixed = make({ token: 'static' });
    connect();
    ws().frame({ event: 'disconnected', data: { reason: 'token_expired', reconnect: 'new_token' } });
    expect(fixed.status).toBe('closed');
    expect(fixed.state.error).toMatchObject({ kind: 'token' });
  });

  it('a refused handshake with a status (npm ws) follows the HTTP rules; without one it backs off', () => {
    const c = make();
    ws().fail('Unexpected server response: 403');
    expect(c.status).toBe('closed');
    expect(c.state.closeReason).toBe('http_403');
    expect(c.state.error).toMatchObject({ kind: 'http', status: 403 });

    const d = make({ token: () => 'fresh' });
    ws().fail('Unexpected server response: 401');
    expect(d.status).toBe('reconnecting');
    const e = make();
    ws().fail(); // a browser says nothing
    expect(e.status).toBe('reconnecting');
    expect(e.state.error).toMatchObject({ kind: 'network' });
  });

  it('a dead socket: no frame within three heartbeat intervals closes it and reconnects', () => {
    const c = make({ heartbeatInterval: 1000 });
    connect();
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(2900);
      ws().frame({ event: 'heartbeat', data: { ts: i } });
    }
    expect(WS.instances).toHaveLength(1);
    expect(c.status).toBe('open');
    vi.advanceTimersByTime(3000);
    expect(c.status).toBe('reconnecting');
    expect(c.state.error).toMatchObject({ kind: 'liveness' });
    expect(ws(0).closedWith).toBe(1000);
    vi.advanceTimersByTime(1000);
    expect(WS.instances).toHaveLength(2);
    // A handshake that never completes is dead too.
    vi.advanceTimersByTime(3000);
    expect(ws(1).closed).toBe(true);
  });

  it('close() closes the socket and stops', () => {
    const c = make();
    connect();
    c.close();
    expect(ws().closedWith).toBe(1000);
    expect(ws().listenerCount('message')).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(WS.instances).toHaveLength(1);
  });
});

describe('transport "auto"', () => {
  it('starts on SSE and keeps it once it delivered, even across failures', () => {
    const c = make({ transport: 'auto' });
    expect(c.activeTransport).toBe('sse');
    expect(ES.instances).toHaveLength(1);
    ES.last!.open();
    ES.last!.emit('connected', { connectionId: 'c1' }, 'e-1');
    ES.last!.fail();
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(2);
    expect(WS.instances).toHaveLength(0);
    expect(c.activeTransport).toBe('sse');
  });

  it('falls back to a WebSocket when SSE fails before anything arrived, then sticks to it', () => {
    const c = make({ transport: 'auto', lastEventId: 'e-5' });
    const got: unknown[] = [];
    c.on('tick', (d) => got.push(d));
    ES.last!.fail(502);
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(c.activeTransport).toBe('websocket');
    expect(ws().query.get('lastEventId')).toBe('e-5');
    connect();
    ws().frame({ id: 'e-6', event: 'tick', data: 6 });
    expect(got).toEqual([6]);
    ws().serverClose();
    vi.advanceTimersByTime(1000);
    expect(WS.instances).toHaveLength(2);
    expect(ES.instances).toHaveLength(1);
    expect(ws().query.get('lastEventId')).toBe('e-6');
  });

  it('alternates while neither delivers; a stop on either stops', () => {
    const c = make({ transport: 'auto' });
    ES.last!.fail();
    vi.advanceTimersByTime(1000);
    ws().fail();
    vi.advanceTimersByTime(2000);
    expect(ES.instances).toHaveLength(2);
    expect(c.activeTransport).toBe('sse');
    ES.last!.fail(403);
    expect(c.status).toBe('closed');
    vi.advanceTimersByTime(60_000);
    expect(WS.instances).toHaveLength(1);
  });
});
