/**
 * HeraldClient with `transport: "websocket"` and `"auto"` in Node (npm `ws` injected), against the
 * real herald binary (HERALD_BIN, else target/debug/herald): events by user, channel and
 * connection, JSON and text payloads, one user on both transports getting each event once per
 * client, resume after the hub closes the socket (a trailing marker shows nothing is lost or
 * repeated), a refusal before the upgrade stopping the client, and `auto` on a hub whose SSE
 * path is unreachable.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { HeraldClient, type HeraldClientOptions } from '../src/client.js';
import type { HeraldEvent } from '../src/types.js';
import type { WebSocketConstructor } from '../src/websocket.js';
import { postJson } from '../e2e/helpers/herald.js';
import { requireHeraldBin, startHerald, within, type HeraldProcess } from './helpers/hub.js';

const hubs: HeraldProcess[] = [];
const clients: HeraldClient[] = [];

beforeAll(() => requireHeraldBin());

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(hubs.splice(0).map((h) => h.stop('SIGKILL', 5_000)));
});

async function hub(args: string[] = []): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

/** A client recording every event it dispatches (`tick`, `end` and the system events). */
function client(options: Partial<HeraldClientOptions> & { url: string }) {
  const c = new HeraldClient({
    transport: 'websocket',
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    shareConnection: false,
    events: ['tick', 'end'],
    backoff: { initialDelay: 300, jitter: 0 },
    ...options,
  });
  clients.push(c);
  const events: HeraldEvent[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  c.on('*', (_d, ev) => (events.push(ev as HeraldEvent), notify()));
  c.onStateChange(() => notify());
  const until = (what: string, check: () => boolean, ms = 10_000) =>
    within(
      ms,
      `${what} (status ${c.status}, transport ${c.activeTransport}, error ${c.state.error?.message}, events ${JSON.stringify(events.map((e) => e.event))})`,
      new Promise<void>((resolve) => {
        const w = () => {
          if (check()) {
            waiters.delete(w);
            resolve();
          }
        };
        waiters.add(w);
        w();
      }),
    );
  const named = (name: string) => events.filter((e) => e.event === name);
  /** The data of every `tick` before the first `end`, once `end` arrived. */
  const ticks = async () => {
    await until('the end marker', () => named('end').length > 0);
    const end = events.findIndex((e) => e.event === 'end');
    return events.slice(0, end).filter((e) => e.event === 'tick').map((e) => e.data);
  };
  return { c, events, named, until, ticks };
}

const publish = async (h: HeraldProcess, body: unknown) => {
  const r = await postJson<{ id: string; delivered: number }>(`${h.url}/api/sse/message`, body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
};

describe('HeraldClient over WebSocket against the real hub', () => {
  it('events by user, channel and connection; JSON and text payloads; SSE and WebSocket clients once each', async () => {
    const h = await hub();
    const alice = client({ url: h.url, userId: 'alice', channels: ['news'] });
    const aliceSse = client({ url: h.url, userId: 'alice', channels: ['news'], transport: 'sse' });
    const bob = client({ url: h.url, userId: 'bob' });
    await alice.until('alice connected', () => alice.named('connected').length === 1);
    await aliceSse.until('alice on SSE connected', () => aliceSse.named('connected').length === 1);
    await bob.until('bob connected', () => bob.named('connected').length === 1);
    expect(alice.c.activeTransport).toBe('websocket');
    expect(aliceSse.c.activeTransport).toBe('sse');
    expect(alice.c.status).toBe('open');
    expect(alice.named('connected')[0]!.data).toMatchObject({ userId: 'alice', channels: ['news'] });
    expect(alice.c.connectionId).toMatch(/^[0-9a-f]{32}$/);

    expect((await publish(h, { event: 'tick', data: 1, users: ['alice'] })).delivered).toBe(2);
    expect((await publish(h, { event: 'tick', data: { n: 2 }, channels: ['news'] })).delivered).toBe(2);
    expect((await publish(h, { event: 'tick', text: 'three\nlines', users: ['alice', 'bob'] })).delivered).toBe(3);
    expect((await publish(h, { event: 'tick', text: '{"looks":"like json"}', users: ['bob'] })).delivered).toBe(1);
    expect((await publish(h, { event: 'tick', data: 5, connections: [bob.c.connectionId!] })).delivered).toBe(1);
    expect((await publish(h, { event: 'other', data: 'unlistened', broadcast: true })).delivered).toBe(3);
    await publish(h, { event: 'end', data: null, broadcast: true });

    expect(await alice.ticks()).toEqual([1, { n: 2 }, 'three\nlines']);
    expect(await aliceSse.ticks()).toEqual([1, { n: 2 }, 'three\nlines']);
    // A text payload stays text over the WebSocket, JSON-looking or not.
    expect(await bob.ticks()).toEqual(['three\nlines', '{"looks":"like json"}', 5]);
    // Every event reaches on('*'), named in advance or not, on both transports (issue 15).
    expect(alice.named('other').map((e) => e.data)).toEqual(['unlistened']);
    expect(aliceSse.named('other').map((e) => e.data)).toEqual(['unlistened']);
    // The same ids on both transports; the client resumes from the last one.
    const ids = alice.named('tick').map((e) => e.id);
    expect(ids.every((id) => typeof id === 'string')).toBe(true);
    expect(ids).toEqual(aliceSse.named('tick').map((e) => e.id));
    expect(alice.named('tick')[2]!.raw).toBe('three\nlines');
  });

  it('resumes after the hub closes the socket: nothing lost, nothing repeated', async () => {
    const h = await hub();
    const a = client({ url: h.url, userId: 'alice', backoff: { initialDelay: 1_000, jitter: 0 } });
    await a.until('connected', () => a.named('connected').length === 1);
    for (const n of [1, 2]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    await a.until('tick 2', () => a.named('tick').length === 2);
    const first = a.c.connectionId;
    expect((await postJson(`${h.url}/api/sse/disconnect`, { users: ['alice'] })).body).toEqual({ disconnected: 1 });
    await a.until('the disconnect', () => a.named('disconnected').length === 1);
    expect(a.named('disconnected')[0]!.data).toMatchObject({ reason: 'server_disconnect', reconnect: 'backoff' });
    expect(a.c.status).toBe('reconnecting');
    // Published while the client is away (its backoff is 1 s): replayed on resume.
    for (const n of [3, 4]) expect((await publish(h, { event: 'tick', data: n, users: ['alice'] })).delivered).toBe(0);
    await a.until('the second connection', () => a.named('connected').length === 2);
    expect(a.c.connectionId).not.toBe(first);
    expect(a.c.status).toBe('open');
    await publish(h, { event: 'tick', data: 5, users: ['alice'] });
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    expect(await a.ticks()).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(a.named('tick').map((e) => e.id)).size).toBe(5);
  }, 20_000);

  it('a refusal before the upgrade (403 identity_not_allowed) stops the client', async () => {
    const h = await hub(['--identity-from-query', 'false']);
    const a = client({ url: h.url, userId: 'alice' });
    await a.until('the client to stop', () => a.c.status === 'closed');
    expect(a.c.state.closeReason).toBe('http_403');
    expect(a.c.state.error).toMatchObject({ kind: 'http', status: 403 });
  });
});

describe('transport "auto" against the real hub', () => {
  it('prefers SSE where SSE works', async () => {
    const h = await hub();
    const a = client({ url: h.url, userId: 'alice', transport: 'auto' });
    await a.until('connected', () => a.named('connected').length === 1);
    expect(a.c.activeTransport).toBe('sse');
    await publish(h, { event: 'tick', data: 1, users: ['alice'] });
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    expect(await a.ticks()).toEqual([1]);
  });

  it('falls back to the WebSocket when SSE cannot connect, and keeps it across reconnects', async () => {
    const h = await hub();
    // The SSE path answers 404 (as behind a proxy that only lets WebSockets through to /api/ws).
    const a = client({ url: h.url, userId: 'alice', transport: 'auto', path: '/api/blocked-sse' });
    await a.until('connected', () => a.named('connected').length === 1);
    expect(a.c.activeTransport).toBe('websocket');
    await publish(h, { event: 'tick', data: 1, users: ['alice'] });
    await a.until('tick 1', () => a.named('tick').length === 1);
    await postJson(`${h.url}/api/sse/disconnect`, { users: ['alice'] });
    await a.until('the second connection', () => a.named('connected').length === 2);
    expect(a.c.activeTransport).toBe('websocket');
    await publish(h, { event: 'tick', data: 2, users: ['alice'] });
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    expect(await a.ticks()).toEqual([1, 2]);
  }, 20_000);
});
