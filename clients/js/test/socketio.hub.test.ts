/**
 * The Socket.IO transport (`/socket.io/`, protocol v5) from Node with npm `socket.io-client`,
 * against the real herald binary (HERALD_BIN, else target/debug/herald): the handshake `auth`
 * (query identity and JWT), events targeted by user and by channel on both Engine.IO transports,
 * one user's SSE, WebSocket and Socket.IO tabs each getting an event once, a refused token as
 * `connect_error`, and resume with `auth.lastEventId` after a forced disconnect (a trailing
 * marker shows nothing is lost or repeated), `reset`, the upgrade from polling to websocket, a
 * slow reader's eviction, shutdown, and two nodes on Redis.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { io, type Socket } from 'socket.io-client';
import { postJson, stats } from '../e2e/helpers/herald.js';
import {
  requireHeraldBin,
  startHerald,
  startRedis,
  subscribe,
  waitUntil,
  within,
  type HeraldProcess,
  type Redis,
  type Subscriber,
} from './helpers/hub.js';

/** One event as the socket got it: `socket.on(name, (data, id) => …)`. */
interface Got {
  event: string;
  data: unknown;
  id?: string;
}

interface Client {
  readonly socket: Socket;
  readonly got: Got[];
  /** The first event (already received or future) matching `pred`, within 10 s. */
  waitFor(what: string, pred: (g: Got) => boolean): Promise<Got>;
}

type Transport = 'polling' | 'websocket';

const hubs: HeraldProcess[] = [];
const sockets: Socket[] = [];
const subs: Subscriber[] = [];
const raw: WebSocket[] = [];
const redises: Redis[] = [];

beforeAll(() => requireHeraldBin());

afterEach(async () => {
  for (const s of sockets.splice(0)) s.disconnect();
  for (const s of subs.splice(0)) s.close();
  for (const w of raw.splice(0)) w.terminate();
  await Promise.all(hubs.splice(0).map((h) => h.stop('SIGKILL', 5_000)));
  await Promise.all(redises.splice(0).map((r) => r.kill()));
});

async function hub(args: string[] = []): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

function hs256(secret: string, claims: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** A socket.io-client socket on the hub, recording every event; not yet connected. */
function client(h: HeraldProcess, auth: Record<string, unknown>, transport: Transport): Client {
  const socket = io(h.url, { auth, transports: [transport], reconnection: false, forceNew: true });
  sockets.push(socket);
  const got: Got[] = [];
  const waiters = new Set<() => void>();
  socket.onAny((event: string, data: unknown, id?: string) => {
    got.push(id === undefined ? { event, data } : { event, data, id });
    waiters.forEach((w) => w());
  });
  return {
    socket,
    got,
    waitFor: (what, pred) =>
      within(
        10_000,
        `${what} (received ${JSON.stringify(got)})`,
        new Promise<Got>((resolve) => {
          const check = () => {
            const found = got.find(pred);
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
}

/** Connects and resolves once Herald's `connected` event arrived. */
async function open(h: HeraldProcess, auth: Record<string, unknown>, transport: Transport = 'websocket'): Promise<Client> {
  const c = client(h, auth, transport);
  await c.waitFor('the connected event', (g) => g.event === 'connected');
  expect(c.socket.io.engine.transport.name).toBe(transport);
  return c;
}

/** The message of the `connect_error` a handshake gets. */
function refusal(h: HeraldProcess, auth: Record<string, unknown>, extraHeaders?: Record<string, string>): Promise<string> {
  const socket = io(h.url, { auth, transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders });
  sockets.push(socket);
  return within(
    10_000,
    'the connect_error',
    new Promise((resolve, reject) => {
      socket.on('connect', () => reject(new Error('the handshake was accepted')));
      socket.on('connect_error', (e) => resolve(e.message));
    }),
  );
}

/** The data of every `tick` event before the first `end` one. */
async function ticks(c: Client): Promise<unknown[]> {
  await c.waitFor('the end marker', (g) => g.event === 'end');
  const end = c.got.findIndex((g) => g.event === 'end');
  return c.got.slice(0, end).filter((g) => g.event === 'tick').map((g) => g.data);
}

const publish = async (h: HeraldProcess, body: unknown, key?: string) => {
  const r = await postJson<{ id: string; delivered: number }>(`${h.url}/api/sse/message`, body, key);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
};

describe('/socket.io/ against the real hub, with npm socket.io-client', () => {
  for (const transport of ['polling', 'websocket'] as const) {
    it(`${transport}: auth identity, events by user and by channel, ids as the second argument`, async () => {
      const h = await hub();
      const alice = await open(h, { userId: 'alice', channels: ['news'] }, transport);
      const bob = await open(h, { userId: 'bob' }, transport);
      expect(alice.got[0]!.data).toMatchObject({ userId: 'alice', channels: ['news'] });
      expect(typeof alice.got[0]!.id).toBe('string');

      expect((await publish(h, { event: 'tick', data: 1, users: ['alice'] })).delivered).toBe(1);
      expect((await publish(h, { event: 'tick', data: { n: 2 }, channels: ['news'] })).delivered).toBe(1);
      expect((await publish(h, { event: 'tick', text: 'three\nlines', users: ['bob'] })).delivered).toBe(1);
      const sent = await publish(h, { event: 'notification', data: { title: 'Hi' }, broadcast: true });
      expect(sent.delivered).toBe(2);
      await publish(h, { event: 'end', data: null, broadcast: true });

      expect(await ticks(alice)).toEqual([1, { n: 2 }]);
      expect(await ticks(bob)).toEqual(['three\nlines']);
      const note = await bob.waitFor('the notification', (g) => g.event === 'notification');
      expect(note).toEqual({ event: 'notification', data: { title: 'Hi' }, id: sent.id });
    });
  }

  it('one user on SSE, WebSocket and Socket.IO gets each event once per tab', async () => {
    const h = await hub();
    const sse = await subscribe(h.url, 'userId=alice&channels=news');
    subs.push(sse);
    const ws = new WebSocket(`${h.url.replace(/^http/, 'ws')}/api/ws?userId=alice&channels=news`);
    raw.push(ws);
    const frames: { event: string; data: unknown; id?: string }[] = [];
    ws.on('message', (m) => frames.push(JSON.parse(m.toString())));
    await within(10_000, 'the WebSocket to open', new Promise((resolve) => ws.once('open', resolve)));
    const sio = await open(h, { userId: 'alice', channels: ['news'] });
    await within(
      10_000,
      'the WebSocket connected frame',
      (async () => {
        while (!frames.some((f) => f.event === 'connected')) await new Promise((r) => ws.once('message', r));
      })(),
    );

    expect((await publish(h, { event: 'tick', data: 1, users: ['alice'] })).delivered).toBe(3);
    expect((await publish(h, { event: 'tick', data: 2, users: ['alice'], channels: ['news'] })).delivered).toBe(3);
    expect((await publish(h, { event: 'tick', data: 3, broadcast: true })).delivered).toBe(3);
    await publish(h, { event: 'end', data: null, broadcast: true });

    expect(await ticks(sio)).toEqual([1, 2, 3]);
    await sse.waitFor('the end marker', (e) => e.event === 'end');
    expect(sse.named('tick').map((e) => e.data)).toEqual([1, 2, 3]);
    await within(
      10_000,
      'the WebSocket end marker',
      (async () => {
        while (!frames.some((f) => f.event === 'end')) await new Promise((r) => ws.once('message', r));
      })(),
    );
    expect(frames.filter((f) => f.event === 'tick').map((f) => f.data)).toEqual([1, 2, 3]);
    // The same ids on every transport.
    const ids = sse.named('tick').map((e) => e.id);
    expect(sio.got.filter((g) => g.event === 'tick').map((g) => g.id)).toEqual(ids);
    expect(frames.filter((f) => f.event === 'tick').map((f) => f.id)).toEqual(ids);
  });

  it('a token: its channels claim rules, and refusals arrive as connect_error saying why', async () => {
    const secret = 'socketio-test-secret-0123456789abcdef';
    const key = 'publisher-key-0123456789';
    const h = await hub(['--jwt-secret', secret, '--publisher-key', key]);
    const token = hs256(secret, { sub: 'carol', channels: ['news'], exp: Math.floor(Date.now() / 1000) + 600 });
    const carol = await open(h, { token, channels: ['news'] }, 'polling');
    expect(carol.got[0]!.data).toMatchObject({ userId: 'carol', channels: ['news'] });
    expect((await publish(h, { event: 'tick', data: 1, channels: ['news'] }, key)).delivered).toBe(1);
    await carol.waitFor('tick', (g) => g.event === 'tick');

    expect(await refusal(h, { token: 'not.a.token' })).toMatch(/^invalid_token: /);
    expect(await refusal(h, { token: hs256('another-secret-0123456789abcdefghij', { sub: 'x' }) })).toMatch(
      /^invalid_signature: /,
    );
    expect(await refusal(h, { token, channels: ['secret'] })).toMatch(/^channel_forbidden: channel secret/);
    expect(await refusal(h, { userId: 'mallory' })).toMatch(/^identity_not_allowed: /);
    expect(await refusal(h, {})).toMatch(/^missing_token: /);
    expect(await refusal(h, { token, channels: 'news' }, { origin: 'https://evil.example' })).toMatch(
      /^origin_not_allowed: /,
    );
  });

  it('resumes with auth.lastEventId after a forced disconnect: nothing lost, nothing repeated', async () => {
    const h = await hub();
    const first = await open(h, { userId: 'alice' });
    const closed = within(
      10_000,
      'the server to disconnect the socket',
      new Promise<string>((resolve) => first.socket.once('disconnect', (reason) => resolve(reason))),
    );
    for (const n of [1, 2]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    const last = await first.waitFor('tick 2', (g) => g.event === 'tick' && g.data === 2);
    const connectionId = (first.got[0]!.data as { connectionId: string }).connectionId;
    expect((await postJson(`${h.url}/api/sse/disconnect`, { connections: [connectionId] })).status).toBe(200);
    const disconnected = await first.waitFor('disconnected', (g) => g.event === 'disconnected');
    expect(disconnected.data).toMatchObject({ reason: 'server_disconnect', reconnect: 'backoff' });
    // A socket on a WebSocket of its own is closed as a transport close, after which
    // socket.io-client reconnects by itself (reconnection is off here; see the next test).
    expect(await closed).toBe('transport close');

    for (const n of [3, 4]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    const resumed = await open(h, { userId: 'alice', lastEventId: last.id }, 'polling');
    await publish(h, { event: 'tick', data: 5, users: ['alice'] });
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    expect(await ticks(resumed)).toEqual([3, 4, 5]);
  });

  it('websocket: after a hub-ended connection socket.io-client reconnects by itself and resumes from auth as a function', async () => {
    const h = await hub();
    let lastEventId: string | undefined;
    const socket = io(h.url, {
      // The auth callback runs at every (re)connect: it carries the last id seen.
      auth: (cb) => cb(lastEventId === undefined ? { userId: 'alice' } : { userId: 'alice', lastEventId }),
      transports: ['websocket'],
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 200,
    });
    sockets.push(socket);
    const got: Got[] = [];
    let connects = 0;
    const waiters = new Set<() => void>();
    socket.onAny((event: string, data: unknown, id?: string) => {
      if (id !== undefined && event !== 'connected') lastEventId = id;
      if (event === 'connected') connects += 1;
      got.push(id === undefined ? { event, data } : { event, data, id });
      waiters.forEach((w) => w());
    });
    const until = (what: string, pred: () => boolean) =>
      within(10_000, `${what} (received ${JSON.stringify(got)})`, new Promise<void>((resolve) => {
        const check = () => { if (pred()) { waiters.delete(check); resolve(); } };
        waiters.add(check);
        check();
      }));
    await until('the first connected', () => connects === 1);
    for (const n of [1, 2]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    await until('tick 2', () => got.some((g) => g.event === 'tick' && g.data === 2));
    const connectionId = (got[0]!.data as { connectionId: string }).connectionId;
    expect((await postJson(`${h.url}/api/sse/disconnect`, { connections: [connectionId] })).status).toBe(200);
    await until('the second connected', () => connects === 2);
    for (const n of [3, 4]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    await until('the end marker', () => got.some((g) => g.event === 'end'));
    expect(got.filter((g) => g.event === 'tick').map((g) => g.data)).toEqual([1, 2, 3, 4]);
    expect(got.filter((g) => g.event === 'disconnected')).toHaveLength(1);
  });

  it('websocket, raw Engine.IO: open packet, pings answered, another namespace refused, a retry after connect_error', async () => {
    const h = await hub(['--ws-ping-interval', '1s']);
    const ws = new WebSocket(`${h.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
    raw.push(ws);
    const messages: string[] = [];
    const waiters = new Set<() => void>();
    ws.on('message', (m) => {
      const text = m.toString();
      messages.push(text);
      if (text === '2') ws.send('3');
      waiters.forEach((w) => w());
    });
    const next = (what: string, pred: (m: string) => boolean) =>
      within(10_000, `${what} (received ${JSON.stringify(messages)})`, new Promise<string>((resolve) => {
        const check = () => {
          const i = messages.findIndex(pred);
          if (i !== -1) { waiters.delete(check); resolve(messages.splice(i, 1)[0]!); }
        };
        waiters.add(check);
        check();
      }));
    const open = JSON.parse((await next('the open packet', (m) => m.startsWith('0'))).slice(1));
    expect(open).toMatchObject({ upgrades: [], pingInterval: 1000 });
    expect(typeof open.sid).toBe('string');
    ws.send('40/admin,{}');
    expect(await next('the namespace refusal', (m) => m.startsWith('44/admin,'))).toBe('44/admin,{"message":"Invalid namespace"}');
    ws.send('40{"userId":5}');
    const refused = JSON.parse((await next('connect_error', (m) => m.startsWith('44{'))).slice(2));
    expect(refused.message).toBe('invalid_auth: auth.userId: must be a string');
    ws.send('40{"userId":"bob","channels":["news"]}');
    const ack = JSON.parse((await next('the CONNECT ack', (m) => m.startsWith('40'))).slice(2));
    expect(typeof ack.sid).toBe('string');
    const connected = JSON.parse((await next('connected', (m) => m.startsWith('42["connected"'))).slice(2));
    expect(connected[1]).toMatchObject({ connectionId: ack.sid, userId: 'bob', channels: ['news'] });
    await next('a ping', (m) => m === '2');
    await next('a second ping (the first was answered)', (m) => m === '2');
    await publish(h, { event: 'note', text: 'two\nlines', channels: ['news'] });
    const note = JSON.parse((await next('the event', (m) => m.startsWith('42["note"'))).slice(2));
    expect(note.slice(0, 2)).toEqual(['note', 'two\nlines']);
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.send('41');
    await within(10_000, 'the hub to close the socket after 41', closed);
    await waitUntil('the connection to be unregistered', async () => (await stats(h)).connections === 0);
   }, 30_000);

  it('websocket, raw Engine.IO: a client that answers no `2` is dropped after pingInterval + pingTimeout, one that answers `3` stays', async () => {
    const h = await hub(['--ws-ping-interval', '300ms', '--ws-pong-timeout', '700ms']);
    const client = (userId: string, answers: boolean) => {
      const ws = new WebSocket(`${h.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
      raw.push(ws);
      const seen = { pings: 0, connected: false, connectedAt: 0 };
      ws.on('message', (m) => {
        const text = m.toString();
        if (text.startsWith('0')) ws.send(`40{"userId":"${userId}"}`);
        if (text.startsWith('42["connected"')) { seen.connected = true; seen.connectedAt = Date.now(); }
        if (text === '2') { seen.pings += 1; if (answers) ws.send('3'); }
      });
      const closed = new Promise<number>((resolve) => ws.once('close', () => resolve(Date.now())));
      return { ws, seen, closed };
    };
    const live = client('live', true);
    const mute = client('mute', false);
    await waitUntil('both connected', async () => live.seen.connected && mute.seen.connected);
    const droppedAt = await within(10_000, 'the silent client to be dropped', mute.closed);
    // Dropped no earlier than its deadline (1 s after the connection, give or take the ack).
    expect(droppedAt - mute.seen.connectedAt).toBeGreaterThanOrEqual(800);
    expect(mute.seen.pings).toBeGreaterThanOrEqual(1);
    // The live one answered every ping and stays past several more deadlines.
    const pings = live.seen.pings;
    await waitUntil('more pings for the live client', async () => live.seen.pings >= pings + 4);
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
    await waitUntil('only the live socket registered', async () => (await stats(h)).connections === 1);
  }, 30_000);

  it('websocket: a refusal that may pass later (a full hub) closes the transport, so the client retries until it gets in', async () => {
    const h = await hub(['--max-connections', '1']);
    const first = await open(h, { userId: 'first' });
    const socket = io(h.url, {
      auth: { userId: 'second' },
      transports: ['websocket'],
      forceNew: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
    });
    sockets.push(socket);
    const errors: string[] = [];
    socket.on('connect_error', (e) => errors.push(e.message));
    let attempts = 0;
    const retried = within(10_000, 'three reconnection attempts', new Promise<void>((resolve) => {
      socket.io.on('reconnect_attempt', () => { if (++attempts === 3) resolve(); });
    }));
    await retried;
    // No final refusal: socket.io-client stops retrying after a connect_error from the server.
    expect(errors.filter((m) => m.startsWith('too_many_connections'))).toEqual([]);
    expect(socket.connected).toBe(false);
    // Room again: the retrying client gets in by itself.
    first.socket.disconnect();
    await within(10_000, 'the second socket to connect', new Promise<void>((resolve) => {
      if (socket.connected) resolve();
      socket.once('connect', () => resolve());
    }));
  });

  for (const transport of ['polling', 'websocket'] as const) {
    it(`${transport}: shutdown says disconnected, then disconnects the socket, and the hub exits`, async () => {
      const h = await hub();
      const c = await open(h, { userId: 'alice' }, transport);
      const closed = within(
        15_000,
        'the server to disconnect the socket',
        new Promise<string>((resolve) => c.socket.once('disconnect', (reason) => resolve(reason))),
      );
      // A name socket.io-client keeps for itself is not emitted; the marker after it is.
      await publish(h, { event: 'disconnect', data: 1, users: ['alice'] });
      await publish(h, { event: 'end', data: null, users: ['alice'] });
      expect(await ticks(c)).toEqual([]);
      expect(c.got.some((g) => g.event === 'disconnect')).toBe(false);
      const exited = h.stop('SIGTERM', 10_000);
      // Over WebSocket, `disconnected` and then the disconnect packet follow on the same socket.
      // A long-polling client between two polls finds the listener already closed when it polls
      // again (the hub stops accepting first): it may then see a transport error, without
      // `disconnected`.
      const reason = await closed;
      const bye = c.got.find((g) => g.event === 'disconnected');
      if (transport === 'websocket') {
        expect(reason).toBe('transport close');
        expect(bye?.data).toMatchObject({ reason: 'server_shutdown' });
      } else {
        expect(reason).toMatch(/^(io server disconnect|transport (error|close))$/);
        if (reason === 'io server disconnect') expect(bye?.data).toMatchObject({ reason: 'server_shutdown' });
      }
      expect(await within(15_000, 'the hub to exit', exited)).toBe(0);
    }, 30_000);
  }

  it('two nodes on Redis: an event published on one reaches Socket.IO sockets on both, once each', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const a = await hub(['--engine', redis.url]);
    const b = await hub(['--engine', redis.url]);
    const onA = await open(a, { userId: 'alice', channels: ['news'] }, 'polling');
    const onB = await open(b, { userId: 'alice' });
    const sse = await subscribe(b.url, 'channels=news');
    subs.push(sse);
    await publish(a, { event: 'tick', data: 1, users: ['alice'] });
    await publish(b, { event: 'tick', data: 2, channels: ['news'] });
    await publish(b, { event: 'end', data: null, broadcast: true });
    expect(await ticks(onA)).toEqual([1, 2]);
    expect(await ticks(onB)).toEqual([1]);
    await sse.waitFor('the end marker', (e) => e.event === 'end');
    expect(sse.named('tick').map((e) => e.data)).toEqual([2]);
  });

  it('a socket that stops reading is evicted as a slow consumer and unregistered', async () => {
    const h = await hub(['--queue-capacity', '16']);
    // A bare Engine.IO polling session that connects to the namespace, then never polls again.
    const base = `${h.url}/socket.io/?EIO=4&transport=polling`;
    const open = await (await fetch(base)).text();
    expect(open.startsWith('0')).toBe(true);
    const { sid } = JSON.parse(open.slice(1)) as { sid: string };
    const sent = await fetch(`${base}&sid=${sid}`, { method: 'POST', body: '40{"userId":"slow"}' });
    expect(await sent.text()).toBe('ok');
    // Poll until the `connected` event (after the namespace's connect packet, maybe a poll later).
    let polled = '';
    while (!polled.includes('"connected"')) {
      polled += await within(10_000, `the connected event (polled ${polled})`, fetch(`${base}&sid=${sid}`).then((r) => r.text()));
    }
    await waitUntil('the connection to register', async () => (await stats(h)).connections === 1);

    // Past socketioxide's buffer (1,024 packets) and the 16 frames of Herald's queue.
    const batch = Array.from({ length: 600 }, (_, n) => ({ event: 'tick', data: n, users: ['slow'] }));
    for (let i = 0; i < 3; i++) {
      const r = await postJson(`${h.url}/api/sse/messages`, batch);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    await waitUntil('the eviction', async () => {
      const s = await stats(h);
      return s.evictedSlowConsumers === 1 && s.connections === 0 && s;
    });
  });

  it('the default transports: polling, then the upgrade to websocket, with no event lost or repeated', async () => {
    const h = await hub();
    const socket = io(h.url, { auth: { userId: 'alice' }, reconnection: false, forceNew: true });
    sockets.push(socket);
    const got: unknown[] = [];
    socket.on('tick', (data: unknown) => got.push(data));
    const upgraded = within(
      10_000,
      'the upgrade to websocket',
      new Promise<string>((resolve) => socket.io.on('open', () => socket.io.engine.once('upgrade', (t) => resolve(t.name)))),
    );
    const connected = within(10_000, 'connected', new Promise((resolve) => socket.once('connected', resolve)));
    await connected;
    // Events published around the upgrade.
    for (const n of [1, 2, 3]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    expect(await upgraded).toBe('websocket');
    for (const n of [4, 5]) await publish(h, { event: 'tick', data: n, users: ['alice'] });
    const end = within(10_000, 'the end marker', new Promise((resolve) => socket.once('end', resolve)));
    await publish(h, { event: 'end', data: null, users: ['alice'] });
    await end;
    expect(got).toEqual([1, 2, 3, 4, 5]);
    expect(socket.io.engine.transport.name).toBe('websocket');
  });

  it('an id the hub cannot resume from yields reset, with the id to continue from', async () => {
    const h = await hub();
    const c = await open(h, { userId: 'alice', lastEventId: 'garbage' }, 'polling');
    const reset = await c.waitFor('reset', (g) => g.event === 'reset');
    expect(reset.data).toMatchObject({ reason: 'unknown_epoch' });
    expect(typeof reset.id).toBe('string');
  });
});
