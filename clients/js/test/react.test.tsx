// @vitest-environment happy-dom
import { BroadcastChannel as NodeBroadcastChannel } from 'node:worker_threads';
import { act, StrictMode, useEffect, useState, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BroadcastChannelConstructor } from '../src/sharing.js';
import { useEventSource, useSSE, type UseEventSourceResult, type UseSSEResult } from '../src/react.js';
import { createFakeEventSource, type FakeEventSourceClass } from './helpers/fake-eventsource.js';
import { FakeLockManager } from './helpers/fake-locks.js';
import { createFakeWebSocket } from './helpers/fake-websocket.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let ES: FakeEventSourceClass;
let root: Root | undefined;

beforeEach(() => {
  ES = createFakeEventSource();
});

afterEach(() => {
  if (root) act(() => root!.unmount());
  root = undefined;
});

function render(node: ReactNode, strict = true) {
  const container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
  act(() => root!.render(strict ? <StrictMode>{node}</StrictMode> : node));
}

describe('useSSE', () => {
  it('strict mode double mount leaves exactly one open client; unmount closes it', () => {
    let result!: UseSSEResult;
    function App() {
      result = useSSE({ url: 'http://h', userId: 'alice', EventSource: ES, shareConnection: false });
      return null;
    }
    render(<App />);
    expect(ES.instances).toHaveLength(2); // mount, strict-mode unmount, mount again
    expect(ES.instances[0]!.closed).toBe(true);
    expect(ES.open).toHaveLength(1);
    expect(result.client).not.toBeNull();
    expect(result.client!.closed).toBe(false);
    expect(result.status).toBe('connecting');

    act(() => {
      ES.open[0]!.open();
      ES.open[0]!.emit('connected', { connectionId: 'conn-1' });
    });
    expect(result.status).toBe('open');
    expect(result.connectionId).toBe('conn-1');

    const client = result.client!;
    act(() => root!.unmount());
    root = undefined;
    expect(ES.open).toHaveLength(0);
    expect(client.closed).toBe(true);
  });

  it('collects events, bounded by maxEvents, skipping heartbeats', () => {
    let result!: UseSSEResult<{ notification: { n: number } }>;
    const onEvent = vi.fn();
    function App() {
      result = useSSE<{ notification: { n: number } }>({
        url: 'http://h',
        EventSource: ES,
        shareConnection: false,
        maxEvents: 2,
        onEvent,
      });
      return null;
    }
    render(<App />);
    const es = ES.open[0]!;
    act(() => {
      es.open();
      es.emit('connected', { connectionId: 'c' });
      es.emit('notification', { n: 1 }, 'ep-1');
      es.emit('heartbeat', { ts: 1 });
      es.emit('notification', { n: 2 }, 'ep-2');
      es.emit('notification', { n: 3 }, 'ep-3');
    });
    expect(result.events.map((e) => e.data)).toEqual([{ n: 2 }, { n: 3 }]);
    expect(result.lastEvent).toMatchObject({ event: 'notification', id: 'ep-3', data: { n: 3 } });
    expect(onEvent).toHaveBeenCalledTimes(3);
  });

  it('re-creates the client only when connection options change', () => {
    let setUser!: (u: string) => void;
    let renders = 0;
    function App() {
      const [user, set] = useState('alice');
      setUser = set;
      renders++;
      useSSE({ url: 'http://h', userId: user, channels: ['a', 'b'], EventSource: ES, shareConnection: false, onEvent: () => {} });
      return null;
    }
    render(<App />, false);
    expect(ES.instances).toHaveLength(1);
    act(() => setUser('alice')); // same value
    act(() => ES.last!.open()); // re-render from state change
    expect(renders).toBeGreaterThan(1);
    expect(ES.instances).toHaveLength(1);
    act(() => setUser('bob'));
    expect(ES.instances).toHaveLength(2);
    expect(ES.instances[0]!.closed).toBe(true);
    expect(ES.open).toHaveLength(1);
    expect(ES.last!.query.get('userId')).toBe('bob');
  });

  it('close() closes; reconnect() after close opens a new client', () => {
    let result!: UseSSEResult;
    function App() {
      result = useSSE({ url: 'http://h', EventSource: ES, shareConnection: false });
      return null;
    }
    render(<App />, false);
    act(() => result.close());
    expect(result.status).toBe('closed');
    expect(ES.open).toHaveLength(0);
    act(() => result.reconnect());
    expect(ES.open).toHaveLength(1);
    expect(result.status).toBe('connecting');
  });

  it('enabled: false does not connect', () => {
    let result!: UseSSEResult;
    function App() {
      result = useSSE({ url: 'http://h', EventSource: ES, enabled: false });
      return null;
    }
    render(<App />);
    expect(ES.instances).toHaveLength(0);
    expect(result.status).toBe('closed');
  });

  it('with tab sharing, strict mode still ends with one leader and one EventSource', async () => {
    const locks = new FakeLockManager();
    let result!: UseSSEResult;
    function App() {
      result = useSSE({
        url: 'http://h',
        userId: 'alice',
        EventSource: ES,
        shareConnection: true,
        locks: locks.forTab('T'),
        BroadcastChannel: NodeBroadcastChannel as unknown as BroadcastChannelConstructor,
      });
      return null;
    }
    render(<App />);
    await act(async () => {
      await vi.waitFor(() => expect(result.client?.role).toBe('leader'));
    });
    expect(ES.open).toHaveLength(1);
    expect(locks.heldNames()).toHaveLength(1);
    act(() => root!.unmount());
    root = undefined;
    expect(ES.open).toHaveLength(0);
    await vi.waitFor(() => expect(locks.heldNames()).toHaveLength(0));
  });
});

describe('useEventSource', () => {
  it('matches the hand-written hook: connected, addHandler, removeHandler', () => {
    let hook!: UseEventSourceResult;
    const handler = vi.fn();
    function Child({ api }: { api: UseEventSourceResult }) {
      // Child effects run before the parent's: the handler is registered before the client exists.
      useEffect(() => {
        api.addHandler('notification', handler);
        return () => api.removeHandler('notification', handler);
      }, [api.addHandler, api.removeHandler]);
      return null;
    }
    function App() {
      hook = useEventSource({ url: 'http://h', userId: 'alice', username: 'Alice', EventSource: ES, shareConnection: false });
      return <Child api={hook} />;
    }
    render(<App />);
    expect(ES.open).toHaveLength(1);
    expect(hook.connected).toBe(false);
    const es = ES.open[0]!;
    expect(es.query.get('username')).toBe('Alice');
    expect(es.listenerCount('notification')).toBe(1);
    act(() => es.open());
    expect(hook.connected).toBe(true);
    act(() => es.emit('notification', { title: 'hi' }, 'ep-1'));
    expect(handler).toHaveBeenCalledTimes(1);
    expect(handler).toHaveBeenCalledWith({ title: 'hi' }, expect.objectContaining({ id: 'ep-1' }));

    // Handlers added later attach to the live client; removed ones stop firing.
    const late = vi.fn();
    act(() => hook.addHandler('alert', late));
    act(() => es.emit('alert', { message: 'm' }, 'ep-2'));
    expect(late).toHaveBeenCalledTimes(1);
    act(() => hook.removeHandler('alert', late));
    act(() => es.emit('alert', { message: 'm' }, 'ep-3'));
    expect(late).toHaveBeenCalledTimes(1);

    act(() => es.fail());
    expect(hook.connected).toBe(false);
    act(() => root!.unmount());
    root = undefined;
    expect(ES.open).toHaveLength(0);
  });
});

describe('hooks with transport', () => {
  it('useSSE over a WebSocket collects the same events; changing transport reconnects on the other one', () => {
    const WS = createFakeWebSocket();
    let result!: UseSSEResult;
    let setTransport!: (t: 'sse' | 'websocket') => void;
    function App() {
      const [transport, set] = useState<'sse' | 'websocket'>('websocket');
      setTransport = set;
      result = useSSE({ url: 'http://h', userId: 'alice', transport, WebSocket: WS, EventSource: ES, shareConnection: false });
      return null;
    }
    render(<App />);
    const open = () => WS.instances.filter((w) => !w.closed);
    expect(open()).toHaveLength(1);
    expect(ES.instances).toHaveLength(0);
    expect(open()[0]!.url).toBe('ws://h/api/ws?userId=alice');
    act(() => {
      open()[0]!.open();
      open()[0]!.frame({ id: 'e-1', event: 'connected', data: { connectionId: 'conn-ws' } });
      open()[0]!.frame({ id: 'e-2', event: 'notification', data: { n: 1 } });
      open()[0]!.frame({ event: 'heartbeat', data: { ts: 1 } });
    });
    expect(result.status).toBe('open');
    expect(result.connectionId).toBe('conn-ws');
    expect(result.events.map((e) => [e.event, e.id, e.data])).toEqual([['notification', 'e-2', { n: 1 }]]);

    act(() => setTransport('sse'));
    expect(open()).toHaveLength(0);
    expect(ES.open).toHaveLength(1);
    expect(result.client!.activeTransport).toBe('sse');
  });
});

describe('the seeds\' hook shapes (unit; against the hub: hooks.hub.test.tsx)', () => {
  it('useSSE() and useSSE(path) read the same origin with fetch and envelope=1', () => {
    const fetchMock = vi.fn(() => new Promise<Response>(() => {}));
    vi.stubGlobal('fetch', fetchMock);
    try {
      let a!: UseSSEResult;
      let b!: UseSSEResult;
      function App() {
        a = useSSE();
        b = useSSE('/api/sse', { shareConnection: false });
        return null;
      }
      render(<App />);
      const urls = fetchMock.mock.calls.map((c) => (c as unknown as [string])[0]);
      expect(urls).toContain('/api/sse?envelope=1');
      expect(a.connectionStatus).toBe('connecting');
      expect(b.error).toBeNull();
      expect(b.messages).toEqual([]);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('seed 004: eventHandlers (ping = heartbeat), isConnected, error string, lastEvent, closeConnection', () => {
    let r!: UseSSEResult;
    const seen: string[] = [];
    function App() {
      r = useSSE({
        url: 'http://h',
        EventSource: ES,
        shareConnection: false,
        eventHandlers: {
          dashboardUpdate: (d: { n: number }) => seen.push(`dash ${d.n}`),
          ping: () => seen.push('ping'),
        },
      });
      return null;
    }
    render(<App />);
    const es = ES.open[0]!;
    // Without envelope support (this fake sends named events), the handler's name is listened to.
    expect(es.url).toContain('envelope=1');
    act(() => {
      es.open();
      es.emit('connected', { connectionId: 'c' });
      es.emit('heartbeat', { ts: 1 });
      es.emit('dashboardUpdate', { n: 1 }, 'ep-1');
    });
    expect(seen).toEqual(['ping', 'dash 1']);
    expect(r.isConnected).toBe(true);
    expect(r.connectionStatus).toBe('connected');
    expect(r.lastEvent).toMatchObject({ type: 'dashboardUpdate', data: { n: 1 } });
    act(() => es.emit('disconnected', { reason: 'server_disconnect', reconnect: 'backoff' }));
    expect(typeof r.error).toBe('string');
    expect(r.error).toContain('server_disconnect');
    expect(r.lastError).toBeInstanceOf(Error);
    act(() => r.closeConnection());
    expect(r.status).toBe('closed');
    expect(r.connectionStatus).toBe('disconnected');
  });

  it('seed 002: removeHandler(name) in the cleanup is right under strict mode', () => {
    const got: unknown[] = [];
    let r!: UseEventSourceResult;
    function App() {
      r = useEventSource({ url: 'http://h', userId: 'u', username: 'john_doe', EventSource: ES, shareConnection: false });
      const { addHandler, removeHandler } = r;
      useEffect(() => {
        addHandler('notification', (d: unknown) => got.push(d));
        addHandler('ping', () => got.push('ping'));
        return () => {
          removeHandler('notification');
          removeHandler('ping');
        };
      }, [addHandler, removeHandler]);
      return null;
    }
    render(<App />);
    const es = ES.open[0]!;
    act(() => {
      es.open();
      es.emit('heartbeat', { ts: 1 });
      es.emit('notification', { title: 'once' }, 'ep-1');
    });
    // The effect ran twice (strict mode); its first cleanup removed the first handlers.
    expect(got).toEqual(['ping', { title: 'once' }]);
    expect(r.connected).toBe(true);
  });
});
