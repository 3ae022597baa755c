// @vitest-environment happy-dom
/**
 * The seeds' hook shapes against the real herald binary, in a DOM (happy-dom, React strict
 * mode), with the default reader (fetch, `envelope=1`; Node's HTTP under it, see helpers/node-fetch.ts): the hooks name no events up front, and
 * must still get every event the seed code waits for.
 *
 * - seed 001: `useSSE('/api/sse')` → `{messages, connectionStatus, connectionId}`;
 * - seed 002: `useEventSource({userId, username, debug})` → `{connected, addHandler,
 *   removeHandler(name)}` with the seed's effect (`return () => removeHandler(name)`);
 * - seed 004: `useSSE({eventHandlers: {notification, dashboardUpdate, ping}})` →
 *   `{isConnected, error (a string), lastEvent, reconnect, closeConnection}`.
 */
import { StrictMode, useEffect, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { HeraldPublisher } from '../src/publisher.js';
import { useEventSource, useSSE, type UseEventSourceResult, type UseSSEResult } from '../src/react.js';
import { requireHeraldBin, startHerald, waitUntil, type HeraldProcess } from './helpers/hub.js';
import { nodeFetch } from './helpers/node-fetch.js';

// Real network events update state at any time: no act() here; React renders on its own and
// every check polls (bounded) until it holds.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;

let hub: HeraldProcess;
let publisher: HeraldPublisher;
let root: Root | undefined;

beforeAll(async () => {
  requireHeraldBin();
  // happy-dom's page (http://localhost:3000) is on another origin than the hub: the hub must allow
  // it (CORS for the stream; publish origins for the publisher and presence calls made from it).
  hub = await startHerald({ args: ['--cors-origins', '*', '--publish-origins', 'http://localhost:3000', '--heartbeat-interval', '300ms'] });
  publisher = new HeraldPublisher({ url: hub.url, retries: 0 });
});

afterAll(async () => {
  await hub?.stop('SIGKILL', 5_000);
});

afterEach(() => {
  root?.unmount();
  root = undefined;
});

function render(node: ReactNode) {
  const container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
  root.render(<StrictMode>{node}</StrictMode>);
}

/** Waits (polling, bounded) until `check` holds for the latest render. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  await waitUntil(what, () => check(), { timeoutMs, intervalMs: 10 });
}

async function connectionsOf(userId: string): Promise<number> {
  const r = await nodeFetch(`${hub.url}/api/sse/presence/users/${userId}`);
  const body = JSON.parse(await r.text()) as { connections: unknown[] };
  return body.connections.length;
}

describe('seed hook shapes against the real hub', () => {
  it("seed 001: useSSE('/api/sse') gets every event as {type, data}", async () => {
    let r!: UseSSEResult;
    function App() {
      // The seed passes its endpoint path; here the hub is on another origin, so the full URL.
      r = useSSE(`${hub.url}/api/sse`, { userId: 'seed1', shareConnection: false, fetch: nodeFetch });
      return null;
    }
    render(<App />);
    await until('connected', () => r.connectionStatus === 'connected' && !!r.connectionId);
    await publisher.sendToUser('seed1', { type: 'order_update', data: { orderId: '123', status: 'shipped' } });
    await publisher.notifyUser('seed1', 'Your order has been processed!', 'notification');
    await publisher.sendToConnection(r.connectionId!, 'marker', 1);
    await until('the marker', () => r.messages.some((m) => m.type === 'marker'));
    expect(r.messages.map((m) => [m.type, m.data])).toEqual([
      ['order_update', { orderId: '123', status: 'shipped' }],
      ['notification', { message: 'Your order has been processed!' }],
      ['marker', 1],
    ]);
    await waitUntil('one connection (strict mode closed the first client)', async () => (await connectionsOf('seed1')) === 1);
  });

  it('seed 002: useEventSource({userId, username, debug}) with addHandler / removeHandler(name)', async () => {
    const debug = vi.spyOn(console, 'debug').mockImplementation(() => {});
    let r!: UseEventSourceResult;
    const got: unknown[] = [];
    let subscribed = true;
    function App({ listen }: { listen: boolean }) {
      r = useEventSource({ url: hub.url, userId: 'seed2', username: 'john_doe', debug: true, shareConnection: false, fetch: nodeFetch });
      const { addHandler, removeHandler } = r;
      useEffect(() => {
        if (!listen) return undefined;
        const handleNotification = (data: unknown) => got.push(data);
        addHandler('notification', handleNotification);
        return () => removeHandler('notification');
      }, [addHandler, removeHandler, listen]);
      return null;
    }
    render(<App listen={subscribed} />);
    await until('connected', () => r.connected);
    await waitUntil('one connection (strict mode closed the first client)', async () => (await connectionsOf('seed2')) === 1);
    await publisher.sendNotification('seed2', 'Hi', 'one', 'info');
    await until('the notification', () => got.length === 1);
    // Strict mode ran the effect twice: one handler, so one call.
    expect(got).toEqual([{ title: 'Hi', message: 'one', type: 'info' }]);
    expect(debug.mock.calls.some((c) => c[0] === '[herald]' && c[1] === 'event' && c[2] === 'notification')).toBe(true);

    // removeHandler(name) in the cleanup: no more calls once the effect is gone.
    subscribed = false;
    root!.render(<StrictMode><App listen={subscribed} /></StrictMode>);
    await publisher.sendNotification('seed2', 'Hi', 'two', 'info');
    await publisher.sendToUser('seed2', 'marker', 2);
    // The hook's client still receives (its own marker handler would see it); ours must not.
    const seen: unknown[] = [];
    r.addHandler('marker', (d) => seen.push(d));
    await publisher.sendToUser('seed2', 'marker', 3);
    await until('the marker', () => seen.includes(3));
    expect(got).toHaveLength(1);
    debug.mockRestore();
  });

  it('seed 004: useSSE({eventHandlers}) with ping, isConnected, error string, lastEvent, reconnect, closeConnection', async () => {
    let r!: UseSSEResult;
    const notifications: unknown[] = [];
    const dashboard: unknown[] = [];
    let pings = 0;
    const errors: string[] = [];
    function App() {
      r = useSSE({
        url: hub.url,
        userId: 'seed4',
        shareConnection: false, fetch: nodeFetch,
        eventHandlers: {
          notification: (data) => notifications.push(data),
          dashboardUpdate: (data) => dashboard.push(data),
          ping: () => pings++,
        },
      });
      if (r.error) errors.push(r.error);
      return <div>{r.isConnected ? 'Connected' : 'Disconnected'}{r.error && <div>Error: {r.error}</div>}</div>;
    }
    render(<App />);
    await until('connected', () => r.isConnected);
    expect(r.error).toBeNull();
    await until('a ping (the heartbeat)', () => pings > 0);
    await publisher.sendToUser('seed4', 'notification', { title: 'Report Approved', body: 'ok' });
    await publisher.sendToUser('seed4', 'dashboardUpdate', { widgets: 3 });
    await until('both handlers', () => notifications.length === 1 && dashboard.length === 1);
    expect(notifications).toEqual([{ title: 'Report Approved', body: 'ok' }]);
    expect(dashboard).toEqual([{ widgets: 3 }]);
    // lastEvent is React state: the handlers run as the events arrive, the render that sets it follows.
    await until('lastEvent is the second event', () => r.lastEvent?.type === 'dashboardUpdate');
    expect(r.lastEvent).toMatchObject({ type: 'dashboardUpdate', event: 'dashboardUpdate', data: { widgets: 3 } });

    // The server ends the stream: the error is a string the seed renders, and the hook comes back.
    const first = r.connectionId!;
    await publisher.disconnect({ connections: [first] });
    await until('reconnected', () => r.isConnected && r.connectionId !== undefined && r.connectionId !== first);
    // On the way, the error was a string the seed's JSX renders.
    expect(errors.some((e) => typeof e === 'string' && e.includes('server_disconnect'))).toBe(true);
    expect(r.error).toBeNull();

    r.closeConnection();
    await until('closed', () => r.status === 'closed' && !r.isConnected);
    await waitUntil('the hub saw it go', async () => (await connectionsOf('seed4')) === 0);
    r.reconnect();
    await until('open again', () => r.isConnected);
    await waitUntil('one connection again', async () => (await connectionsOf('seed4')) === 1);
  });

  it('a refused connection shows the error as a string and stops (401 on a keyed hub)', async () => {
    const keyed = await startHerald({ args: ['--cors-origins', '*', '--jwt-secret', 's'.repeat(32)] });
    try {
      let r!: UseSSEResult;
      function App() {
        r = useSSE({ url: keyed.url, token: 'not-a-jwt', shareConnection: false, fetch: nodeFetch });
        return null;
      }
      render(<App />);
      await until('closed with an error', () => r.status === 'closed' && r.error !== null);
      expect(r.error).toMatch(/401/);
      expect(r.lastError).toMatchObject({ name: 'HeraldAuthError', status: 401 });
    } finally {
      root?.unmount();
      root = undefined;
      await keyed.stop('SIGKILL', 5_000);
    }
  });
});
