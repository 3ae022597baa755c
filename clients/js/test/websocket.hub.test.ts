/**
 * The WebSocket transport (`GET /api/ws`) from Node with npm `ws`, against the real herald binary
 * (HERALD_BIN, else target/debug/herald): one JSON text message per event, one user's SSE and
 * WebSocket tabs each getting an event once, text and JSON payloads, resume with `lastEventId`
 * after a forced disconnect (a trailing marker shows nothing is lost or repeated), and the JSON
 * refusals before the upgrade (identity, Origin).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { postJson } from '../e2e/helpers/herald.js';
import { requireHeraldBin, startHerald, subscribe, within, type HeraldProcess, type Subscriber } from './helpers/hub.js';

interface Frame {
  id?: string;
  event: string;
  data: unknown;
}

/** A socket and every frame it received, in order. */
interface Socket {
  readonly ws: WebSocket;
  readonly frames: Frame[];
  /** The first frame (already received or future) matching `pred`, within 10 s. */
  waitFor(what: string, pred: (f: Frame) => boolean): Promise<Frame>;
  /** Resolves with the close code once the server closed the socket. */
  readonly closed: Promise<number>;
}

const hubs: HeraldProcess[] = [];
const sockets: WebSocket[] = [];
const subs: Subscriber[] = [];

beforeAll(() => requireHeraldBin());

afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  for (const s of subs.splice(0)) s.close();
  await Promise.all(hubs.splice(0).map((h) => h.stop('SIGKILL', 5_000)));
});

async function hub(args: string[] = []): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

const wsUrl = (h: HeraldProcess, query: string) => `${h.url.replace(/^http/, 'ws')}/api/ws?${query}`;

/** Opens a socket and resolves once its `connected` frame arrived. */
async function open(h: HeraldProcess, query: string): Promise<Socket> {
  const ws = new WebSocket(wsUrl(h, query));
  sockets.push(ws);
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data, isBinary) => {
    expect(isBinary).toBe(false);
    const text = data.toString();
    expect(text).not.toContain('\n');
    frames.push(JSON.parse(text) as Frame);
    waiters.forEach((w) => w());
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const socket: Socket = {
    ws,
    frames,
    closed,
    waitFor: (what, pred) =>
      within(
        10_000,
        `${what} (received ${JSON.stringify(frames)})`,
        new Promise<Frame>((resolve) => {
          const check = () => {
            const found = frames.find(pred);
            if (found) {
              waiters.delete(check);
              resolve(found);
            }
          };
          waiters.add(check);
          check();
        }),
      ),
  };
  await socket.waitFor('the connected frame', (f) => f.event === 'connected');
  return socket;
}

/** The HTTP status and JSON body of a refused upgrade. */
function refusal(url: string, options: WebSocket.ClientOptions = {}): Promise<{ status: number; body: any }> {
  return within(
    10_000,
    `the refusal of ${url}`,
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options);
      ws.on('open', () => reject(new Error(`${url} was accepted`)));
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      ws.on('error', () => {
        /* reported through unexpected-response */
      });
    }),
  );
}

/** The `n` of every `tick` frame before the first `end` one. */
async function ticks(s: Socket): Promise<unknown[]> {
  await s.waitFor('the end marker', (f) => f.event === 'end');
  const end = s.frames.findIndex((f) => f.event === 'end');
  return s.frames.slice(0, end).filter((f) => f.event === 'tick').map((f) => f.data);
}

const publish = async (h: HeraldProcess, body: unknown) => {
  const r = await postJson<{ id: string; delivered: number }>(`${h.url}/api/sse/message`, body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
};

describe('GET /api/ws against the real hub, with npm ws', () => {
  it('one user on SSE and on WebSocket gets each event once per tab, JSON and text alike', async () => {
    const h = await hub();
    const sse = await subscribe(h.url, 'userId=alice&channels=news');
    subs.push(sse);
    const ws = await open(h, 'userId=alice&channels=news');
    const bob = await open(h, 'userId=bob');
    expect(ws.frames[0]!.data).toMatchObject({ userId: 'alice', channels: ['news'] });

    expect((await publish(h, { event: 'tick', data: 1, users: ['alice'] })).delivered).toBe(2);
    expect((await publish(h, { event: 'tick', data: 2, users: ['alice'], channels: ['news'] })).delivered).toBe(2);
    expect((await publish(h, { event: 'tick', data: { n: 3 }, broadcast: true })).delivered).toBe(3);
    expect((await publish(h, { event: 'tick', text: 'four\nlines', users: ['alice', 'bob'] })).delivered).toBe(3);
    const connectionId = (bob.frames[0]!.data as { connectionId: string }).connectionId;
    expect((await publish(h, { event: 'tick', data: 5, connections: [connectionId] })).delivered).toBe(1);
    await publish(h, { event: 'end', data: null, broadcast: true });

    expect(await ticks(ws)).toEqual([1, 2, { n: 3 }, 'four\nlines']);
    expect(await ticks(bob)).toEqual([{ n: 3 }, 'four\nlines', 5]);
    await sse.waitFor('the end marker', (e) => e.event === 'end');
    expect(sse.named('tick').map((e) => e.data)).toEqual([1, 2, { n: 3 }, 'four\nlines']);
    // Every published event carries its id, the same on both transports.
    expect(ws.frames.filter((f) => f.event === 'tick').map((f) => f.id)).toEqual(sse.named('tick').map((e) => e.id));
  });

  it('resumes with lastEventId after a forced disconnect: nothing lost, nothing repeated', async () => {
    const h = await hub();
    const first = await open(h, 'userId=alice');
    for (const n of [1, 2]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    const last = await first.waitFor('tick 2', (f) => f.event === 'tick' && f.data === 2);
    const connectionId = (first.frames[0]!.data as { connectionId: string }).connectionId;
    expect((await postJson(`${h.url}/api/sse/disconnect`, { connections: [connectionId] })).status).toBe(200);
    const disconnected = await first.waitFor('disconnected', (f) => f.event === 'disconnected');
    expect(disconnected.data).toMatchObject({ reason: 'server_disconnect', reconnect: 'backoff' });
    expect(disconnected.id).toBeUndefined();
    expect(await first.closed).toBe(1000);

    for (const n of [3, 4]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    const resumed = await open(h, `userId=alice&lastEventId=${encodeURIComponent(last.id!)}`);
    await publish(h, { event: 'tick', data: 5, users: ['alice'] });
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    expect(await ticks(resumed)).toEqual([3, 4, 5]);
  });

  it('an id the hub cannot resume from yields reset', async () => {
    const h = await hub();
    const s = await open(h, 'userId=alice&lastEventId=garbage');
    const reset = await s.waitFor('reset', (f) => f.event === 'reset');
    expect(reset.data).toMatchObject({ reason: 'unknown_epoch' });
    expect(typeof reset.id).toBe('string');
  });

  it('refuses before the upgrade with the JSON errors of /api/sse, and foreign pages', async () => {
    const h = await hub(['--identity-from-query', 'false']);
    const identity = await refusal(wsUrl(h, 'userId=alice'));
    expect(identity.status).toBe(403);
    expect(identity.body.error.code).toBe('identity_not_allowed');
    const bad = await refusal(wsUrl(h, 'channels=not%20a%20channel'));
    expect(bad.status).toBe(400);
    const foreign = await refusal(wsUrl(h, 'channels=news'), { origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.code).toBe('origin_not_allowed');
    // The hub's own page may.
    const ws = new WebSocket(wsUrl(h, 'channels=news'), { origin: h.url });
    sockets.push(ws);
    await within(10_000, 'the own origin to open', new Promise((resolve) => ws.once('open', resolve)));
  });
});
