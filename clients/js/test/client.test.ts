import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import { HeraldClient, type HeraldClientOptions } from '../src/client.js';
import type { ConnectedData, ConnectionStatus, HeraldEvent } from '../src/types.js';
import { createFakeEventSource, type FakeEventSourceClass } from './helpers/fake-eventsource.js';

let ES: FakeEventSourceClass;
const clients: HeraldClient<any>[] = [];

function make<E extends Record<string, unknown> = Record<string, unknown>>(opts: Partial<HeraldClientOptions> = {}) {
  const c = new HeraldClient<E>({
    url: 'http://127.0.0.1:8080',
    EventSource: ES,
    shareConnection: false,
    backoff: { initialDelay: 1000, maxDelay: 8000, multiplier: 2, jitter: 0 },
    ...opts,
  });
  clients.push(c);
  return c;
}

function es(i?: number) {
  const inst = i === undefined ? ES.last : ES.instances[i];
  if (!inst) throw new Error(`no EventSource #${i ?? 'last'}`);
  return inst;
}

beforeEach(() => {
  ES = createFakeEventSource();
  vi.useFakeTimers();
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  vi.useRealTimers();
});

describe('HeraldClient: connecting', () => {
  it('opens an EventSource on the subscribe URL', () => {
    make({ userId: 'alice', username: 'Alice', channels: ['orders', 'news'], token: 'jwt' });
    expect(ES.instances).toHaveLength(1);
    expect(es().url).toBe('http://127.0.0.1:8080/api/sse?userId=alice&username=Alice&channels=orders,news&token=jwt&envelope=1');
  });

  it('passes the initial lastEventId and eventSourceInit', () => {
    make({ lastEventId: 'abc-7', eventSourceInit: { withCredentials: true } });
    expect(es().query.get('lastEventId')).toBe('abc-7');
    expect(es().init).toEqual({ withCredentials: true });
  });

  it('requires a url', () => {
    expect(() => new HeraldClient({} as HeraldClientOptions)).toThrow(TypeError);
  });
});

describe('HeraldClient: status', () => {
  it('goes connecting -> open -> reconnecting -> open and reports changes', () => {
    const c = make();
    const seen: [ConnectionStatus, ConnectionStatus][] = [];
    c.onStatusChange((s, p) => seen.push([s, p]));
    expect(c.status).toBe('connecting');
    es().open();
    expect(c.status).toBe('open');
    es().fail();
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    es().open();
    expect(c.status).toBe('open');
    c.close();
    expect(c.status).toBe('closed');
    expect(seen).toEqual([
      ['open', 'connecting'],
      ['reconnecting', 'open'],
      ['open', 'reconnecting'],
      ['closed', 'open'],
    ]);
  });

  it('takes connectionId from the connected event and clears it on drop', () => {
    const c = make();
    const states: (string | undefined)[] = [];
    c.onStateChange((s) => states.push(s.connectionId));
    es().open();
    es().emit('connected', { connectionId: 'conn-1', userId: 'alice', channels: [], serverTime: 1 });
    expect(c.connectionId).toBe('conn-1');
    es().fail();
    expect(c.connectionId).toBeUndefined();
    expect(states).toContain('conn-1');
  });

  it('reports errors and clears them when the connection opens again', () => {
    const c = make();
    const errors: Error[] = [];
    c.onError((e) => errors.push(e));
    es().open();
    es().fail();
    expect(errors).toHaveLength(1);
    expect(c.state.error).toMatchObject({ name: 'HeraldConnectionError', kind: 'network' });
    vi.advanceTimersByTime(1000);
    es().open();
    expect(c.state.error).toBeUndefined();
  });
});

describe('HeraldClient: events', () => {
  it('delivers parsed data with id and event name to typed handlers', () => {
    type Events = { notification: { title: string } };
    const c = make<Events>();
    const got: unknown[] = [];
    c.on('notification', (data, ev) => {
      const title: string = data.title; // typed
      got.push([title, ev.id, ev.event, ev.raw]);
    });
    es().open();
    es().emit('notification', { title: 'Hi' }, 'ep-1');
    expect(got).toEqual([['Hi', 'ep-1', 'notification', '{"title":"Hi"}']]);
  });

  it('listens on the current EventSource for names registered later', () => {
    const c = make();
    es().open();
    expect(es().listenerCount('orders.created')).toBe(0);
    const h = vi.fn();
    c.on('orders.created', h);
    expect(es().listenerCount('orders.created')).toBe(1);
    es().emit('orders.created', { n: 1 }, 'ep-1');
    expect(h).toHaveBeenCalledWith({ n: 1 }, expect.objectContaining({ id: 'ep-1', event: 'orders.created' }));
  });

  it('off() and the returned unsubscribe remove handlers', () => {
    const c = make();
    const a = vi.fn();
    const b = vi.fn();
    c.on('x', a);
    const unsub = c.on('x', b);
    c.off('x', a);
    unsub();
    es().emit('x', 1, 'ep-1');
    expect(a).not.toHaveBeenCalled();
    expect(b).not.toHaveBeenCalled();
  });

  it('passes non-JSON data through as the raw string and handles unnamed messages', () => {
    const c = make();
    const h = vi.fn();
    c.on('message', h);
    es().emit('message', 'plain text');
    expect(h).toHaveBeenCalledWith('plain text', expect.objectContaining({ event: 'message', raw: 'plain text' }));
  });

  it("'*' receives every delivered event, and the `events` option pre-registers names", () => {
    const c = make({ events: ['alert'] });
    const all: string[] = [];
    c.on('*', (_d, ev) => all.push(ev.event));
    es().open();
    es().emit('connected', { connectionId: 'c1' });
    es().emit('alert', { message: 'm' }, 'ep-1');
    es().emit('heartbeat', { ts: 1 });
    es().emit('unregistered', {}, 'ep-2'); // nobody listens: EventSource never delivers it
    expect(all).toEqual(['connected', 'alert', 'heartbeat']);
  });

  it('a throwing handler does not break the others', () => {
    const report = vi.spyOn(console, 'error').mockImplementation(() => {});
    const g = globalThis as { reportError?: unknown };
    const saved = g.reportError;
    delete g.reportError;
    try {
      const c = make();
      const ok = vi.fn();
      c.on('x', () => {
        throw new Error('boom');
      });
      c.on('x', ok);
      es().emit('x', 1, 'ep-1');
      expect(ok).toHaveBeenCalled();
      expect(report).toHaveBeenCalled();
    } finally {
      if (saved) g.reportError = saved;
    }
  });
});

describe('HeraldClient: lastEventId', () => {
  it('tracks ids of published events and resets; heartbeats and connected have none', () => {
    const c = make();
    const ids: (string | undefined)[] = [];
    c.on('*', (_d, ev) => ids.push(ev.id));
    c.on('orders', () => {});
    es().open();
    es().emit('connected', { connectionId: 'c1' });
    expect(c.lastEventId).toBeUndefined();
    es().emit('orders', { a: 1 }, 'ep-1');
    es().emit('heartbeat', { ts: 1 }); // EventSource still reports lastEventId 'ep-1' here
    es().emit('orders', { a: 2 }, 'ep-2');
    es().emit('reset', { reason: 'history_gap' }, 'ep-9'); // the hub's reset carries the head id
    expect(ids).toEqual([undefined, 'ep-1', undefined, 'ep-2', 'ep-9']);
    expect(c.lastEventId).toBe('ep-9');
  });

  it('passes lastEventId on every reconnect', () => {
    const c = make({ lastEventId: 'ep-0', channels: 'orders' });
    c.on('orders', () => {});
    expect(es(0).query.get('lastEventId')).toBe('ep-0');
    es(0).open();
    es(0).emit('orders', {}, 'ep-5');
    es(0).fail();
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(2);
    expect(es(1).query.get('lastEventId')).toBe('ep-5');
    expect(es(1).query.get('channels')).toBe('orders');
    es(1).open();
    es(1).emit('orders', {}, 'ep-6');
    es(1).fail();
    vi.advanceTimersByTime(1000);
    expect(es(2).query.get('lastEventId')).toBe('ep-6');
  });

  it('delivers a replayed event only once', () => {
    const c = make();
    const h = vi.fn();
    c.on('orders', h);
    es(0).open();
    es(0).emit('orders', { n: 1 }, 'ep-1');
    es(0).fail();
    vi.advanceTimersByTime(1000);
    es(1).open();
    es(1).emit('orders', { n: 1 }, 'ep-1');
    es(1).emit('orders', { n: 2 }, 'ep-2');
    expect(h.mock.calls.map((call) => call[0])).toEqual([{ n: 1 }, { n: 2 }]);
  });
});

describe('HeraldClient: reconnect with backoff', () => {
  it('closes the EventSource on error so the built-in reconnect cannot race ours', () => {
    make();
    es(0).open();
    es(0).fail();
    expect(es(0).closed).toBe(true);
    expect(ES.instances).toHaveLength(1);
  });

  it('backs off exponentially up to the cap and resets after data flows', () => {
    make();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      es().fail();
      const before = ES.instances.length;
      let waited = 0;
      while (ES.instances.length === before) {
        vi.advanceTimersByTime(100);
        waited += 100;
      }
      delays.push(waited);
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000]);
    es().open();
    es().emit('connected', { connectionId: 'c' });
    es().fail();
    vi.advanceTimersByTime(999);
    expect(ES.instances).toHaveLength(6);
    vi.advanceTimersByTime(1);
    expect(ES.instances).toHaveLength(7);
  });

  it('applies full jitter within [0, ceiling]', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.75);
    make({ backoff: { initialDelay: 1000, maxDelay: 8000, jitter: 1 } });
    es().fail();
    vi.advanceTimersByTime(249);
    expect(ES.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(ES.instances).toHaveLength(2);
  });

  it('reconnect() reconnects immediately', () => {
    const c = make();
    es(0).open();
    c.reconnect();
    expect(es(0).closed).toBe(true);
    expect(ES.instances).toHaveLength(2);
    expect(c.status).toBe('reconnecting');
  });
});

describe('HeraldClient: liveness', () => {
  it('reconnects when nothing arrives within livenessTimeout', () => {
    const c = make({ livenessTimeout: 45_000 });
    es(0).open();
    vi.advanceTimersByTime(44_999);
    expect(c.status).toBe('open');
    vi.advanceTimersByTime(1);
    expect(es(0).closed).toBe(true);
    expect(c.status).toBe('reconnecting');
    expect(c.state.error).toMatchObject({ kind: 'liveness' });
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(2);
  });

  it('heartbeats keep the connection alive', () => {
    const c = make({ livenessTimeout: 20_000 });
    es(0).open();
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(15_000);
      es(0).emit('heartbeat', { ts: Date.now() });
    }
    expect(c.status).toBe('open');
    expect(ES.instances).toHaveLength(1);
  });

  it('also covers a connection stuck before open', () => {
    make({ livenessTimeout: 5000 });
    vi.advanceTimersByTime(5000);
    expect(es(0).closed).toBe(true);
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(2);
  });

  it('livenessTimeout 0 disables it', () => {
    const c = make({ livenessTimeout: 0 });
    es(0).open();
    vi.advanceTimersByTime(10 * 60_000);
    expect(c.status).toBe('open');
  });
});

describe('HeraldClient: close()', () => {
  it('stops everything: EventSource, timers, reconnects, listeners', () => {
    const c = make();
    const h = vi.fn();
    const status = vi.fn();
    c.on('x', h);
    c.onStatusChange(status);
    es(0).open();
    es(0).fail(); // reconnect timer pending
    c.close();
    expect(c.status).toBe('closed');
    expect(c.state.closeReason).toBe('client_close');
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(ES.instances).toHaveLength(1);
    status.mockClear();
    es(0).emit('x', 1, 'ep-9');
    expect(h).not.toHaveBeenCalled();
    c.reconnect(); // no-op once closed
    expect(ES.instances).toHaveLength(1);
    expect(status).not.toHaveBeenCalled();
  });

  it('closes the open EventSource', () => {
    const c = make();
    es(0).open();
    c.close();
    expect(es(0).closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('can be called from inside a handler', () => {
    const c = make();
    c.on('x', () => c.close());
    es(0).open();
    es(0).emit('x', 1, 'ep-1');
    expect(c.status).toBe('closed');
    vi.advanceTimersByTime(60_000);
    expect(ES.instances).toHaveLength(1);
  });
});

describe('HeraldClient: disconnected handling', () => {
  it('server_shutdown: dispatches the event, then reconnects with backoff and lastEventId', () => {
    const c = make();
    const h = vi.fn();
    c.on('disconnected', h);
    c.on('orders', () => {});
    es(0).open();
    es(0).emit('orders', {}, 'ep-3');
    es(0).emit('disconnected', { reason: 'server_shutdown', message: 'bye', timestamp: 1 });
    expect(h).toHaveBeenCalledWith({ reason: 'server_shutdown', message: 'bye', timestamp: 1 }, expect.anything());
    expect(es(0).closed).toBe(true);
    expect(c.status).toBe('reconnecting');
    expect(ES.instances).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(2);
    expect(es(1).query.get('lastEventId')).toBe('ep-3');
  });

  it.each(['server_disconnect', 'timeout', 'some_future_reason'])('%s: reconnects', (reason) => {
    const c = make();
    es(0).open();
    es(0).emit('disconnected', { reason });
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(2);
  });

  it('token_expired with a static token: stops for good', () => {
    const c = make({ token: 'old' });
    es(0).open();
    es(0).emit('disconnected', { reason: 'token_expired', message: 'expired' });
    expect(c.status).toBe('closed');
    expect(c.state.closeReason).toBe('token_expired');
    expect(c.state.error).toMatchObject({ kind: 'token', reason: 'token_expired' });
    vi.advanceTimersByTime(60_000);
    expect(ES.instances).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('token_expired with a token function: reconnects with a fresh token', () => {
    let n = 0;
    const c = make({ token: () => `tok-${++n}` });
    expect(es(0).query.get('token')).toBe('tok-1');
    es(0).open();
    es(0).emit('disconnected', { reason: 'token_expired' });
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(es(1).query.get('token')).toBe('tok-2');
  });

  it('follows the hub\'s reconnect advice over the reason (the advice is the contract)', () => {
    // `no` stops even on a reason that alone would mean "reconnect".
    const a = make();
    es(0).open();
    es(0).emit('disconnected', { reason: 'server_disconnect', reconnect: 'no' });
    expect(a.status).toBe('closed');
    expect(a.state.closeReason).toBe('server_disconnect');
    vi.advanceTimersByTime(60_000);
    expect(ES.instances).toHaveLength(1);
    a.close();

    // `backoff` reconnects even on a token reason (a static token is then fine).
    const b = make({ token: 'static' });
    es(1).open();
    es(1).emit('disconnected', { reason: 'token_expired', reconnect: 'backoff' });
    expect(b.status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(3);
    b.close();

    // `new_token` on a reason the client has never heard of: stops with a static token...
    const c = make({ token: 'static' });
    es(3).open();
    es(3).emit('disconnected', { reason: 'key_rotated', reconnect: 'new_token' });
    expect(c.status).toBe('closed');
    expect(c.state.error).toMatchObject({ kind: 'token', reason: 'key_rotated' });
    c.close();

    // ...and reconnects, after the backoff delay, with a token function.
    let n = 0;
    const d = make({ token: () => `tok-${++n}` });
    es(4).open();
    es(4).emit('disconnected', { reason: 'key_rotated', reconnect: 'new_token' });
    expect(d.status).toBe('reconnecting');
    vi.advanceTimersByTime(999);
    expect(ES.instances).toHaveLength(5);
    vi.advanceTimersByTime(1);
    expect(es(5).query.get('token')).toBe('tok-2');
  });

  it('reconnect "now": comes back at once, not after the backoff delay', () => {
    const c = make({ backoff: { initialDelay: 60_000, jitter: 0 } });
    c.on('x', () => {});
    es(0).open();
    es(0).emit('x', 1, 'ep-9');
    es(0).emit('disconnected', { reason: 'timeout', reconnect: 'now' });
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(0);
    expect(ES.instances).toHaveLength(2);
    expect(es(1).query.get('lastEventId')).toBe('ep-9');
  });

  it('without the advice (an older hub) the same reason waits for the backoff delay', () => {
    const c = make({ backoff: { initialDelay: 60_000, jitter: 0 } });
    es(0).open();
    es(0).emit('disconnected', { reason: 'timeout' });
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(59_999);
    expect(ES.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(ES.instances).toHaveLength(2);
  });

  it('an advice the client does not know reads as backoff', () => {
    const c = make({ token: 'static' });
    es(0).open();
    es(0).emit('disconnected', { reason: 'token_expired', reconnect: 'in_a_while' });
    expect(c.status).toBe('reconnecting');
    vi.advanceTimersByTime(999);
    expect(ES.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(ES.instances).toHaveLength(2);
  });

  it('supports an async token provider', async () => {
    const c = make({ token: async () => 'async-tok' });
    expect(ES.instances).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(es(0).query.get('token')).toBe('async-tok');
    c.close();
  });

  it('an async token provider that rejects is a token error, not a network one', async () => {
    const c = make({ token: () => Promise.reject(new Error('no session')) });
    await vi.advanceTimersByTimeAsync(0);
    expect(ES.instances).toHaveLength(0);
    expect(c.state.error).toMatchObject({ kind: 'token' });
    c.close();
  });

  it('the disconnectPolicy option overrides the defaults', () => {
    const policy = vi.fn((info: { type: string; data?: { reason: string } }) =>
      info.type === 'disconnected' && info.data?.reason === 'server_disconnect' ? ('stop' as const) : undefined,
    );
    const c = make({ disconnectPolicy: policy });
    es(0).open();
    es(0).emit('disconnected', { reason: 'server_disconnect' });
    expect(policy).toHaveBeenCalled();
    expect(c.status).toBe('closed');
    expect(c.state.closeReason).toBe('server_disconnect');
  });

  it('HTTP errors when visible: 401 stops, 503 reconnects', () => {
    const a = make();
    es(0).fail(401);
    expect(a.status).toBe('closed');
    expect(a.state.closeReason).toBe('http_401');
    const b = make();
    es(1).fail(503);
    expect(b.status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(ES.instances).toHaveLength(3);
  });
});

describe('HeraldClient: types (checked by `npm run typecheck`)', () => {
  it('typed event maps type handlers and reject unknown names', () => {
    const c = make<{ notification: { title: string }; 'orders.created': { id: number } }>();
    c.on('notification', (d, ev) => {
      expectTypeOf(d).toEqualTypeOf<{ title: string }>();
      expectTypeOf(ev.event).toEqualTypeOf<'notification'>();
    });
    c.on('connected', (d) => expectTypeOf(d.connectionId).toEqualTypeOf<string>());
    c.on('*', (_d, ev) => {
      if (ev.event === 'orders.created') expectTypeOf(ev.data).toEqualTypeOf<{ id: number }>();
    });
    // @ts-expect-error unknown event name on a typed map
    c.on('nope', () => {});
    // @ts-expect-error wrong payload type
    c.on('notification', (_d: { title: number }) => {});

    const u = make();
    u.on('anything', (d: { x: number }, ev: HeraldEvent<{ x: number }>) => d.x + (ev.id ? 1 : 0));
    u.on('connected', (d) => expectTypeOf(d).toEqualTypeOf<ConnectedData>());
    expect(true).toBe(true);
  });
});
