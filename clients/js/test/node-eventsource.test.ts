/**
 * The client in Node against a tiny loopback SSE server, with the real
 * `eventsource` package loaded lazily (Node 20 has no global EventSource).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient } from '../src/client.js';
import { HeraldAuthError } from '../src/errors.js';
import { getGlobalEventSource, loadEventSourcePackage } from '../src/eventsource.js';

let server: Server | undefined;
const sockets = new Set<import('node:net').Socket>();

async function start(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<string> {
  let n = 0;
  server = createServer((req, res) => handler(req, res, n++));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

function sse(res: ServerResponse) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write('retry: 10000\n\n');
  return (event: string, data: unknown, id?: string) =>
    res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

describe.each(['eventsource', 'fetch'] as const)('HeraldClient in Node, sseReader %s', (sseReader) => {
  it('has no global EventSource on this Node, and loads the package lazily', async () => {
    if (getGlobalEventSource() || sseReader === 'fetch') return; // nothing to prove
    const ctor = await loadEventSourcePackage();
    expect(typeof ctor).toBe('function');
  });

  it('receives events, reconnects with lastEventId and stops on token_expired', async () => {
    const queries: URLSearchParams[] = [];
    const auth: (string | undefined)[] = [];
    const url = await start((req, res, n) => {
      const q = new URL(req.url!, 'http://x').searchParams;
      queries.push(q);
      auth.push(req.headers.authorization);
      const send = sse(res);
      send('connected', { connectionId: `conn-${n}`, userId: q.get('userId'), channels: [], serverTime: Date.now() });
      if (n === 0) {
        send('notification', { title: 'one' }, 'ep-1');
        send('heartbeat', { ts: Date.now() });
        setTimeout(() => res.end(), 20); // stream ends without notice
      } else {
        send('notification', { title: 'two' }, 'ep-2');
        send('disconnected', { reason: 'token_expired', message: 'expired', timestamp: Date.now() });
        setTimeout(() => res.end(), 20);
      }
    });

    const client = new HeraldClient({
      url,
      userId: 'alice',
      channels: ['orders'],
      token: 'static-token',
      shareConnection: false,
      sseReader,
      backoff: { initialDelay: 50, maxDelay: 200, jitter: 0 },
    });
    const titles: string[] = [];
    const statuses: string[] = [];
    client.on('notification', (d: { title: string }) => titles.push(d.title));
    client.onStatusChange((s) => statuses.push(s));

    await vi.waitFor(() => expect(client.status).toBe('closed'), { timeout: 5000 });
    expect(titles).toEqual(['one', 'two']);
    expect(client.lastEventId).toBe('ep-2');
    expect(client.state.closeReason).toBe('token_expired');
    expect(statuses).toEqual(['open', 'reconnecting', 'open', 'closed']);
    expect(queries).toHaveLength(2);
    expect(queries[0]!.get('lastEventId')).toBeNull();
    expect(queries[1]!.get('lastEventId')).toBe('ep-1');
    expect(queries[1]!.get('userId')).toBe('alice');
    if (sseReader === 'fetch') {
      // The token goes in the header, never in the URL.
      expect(queries[1]!.get('token')).toBeNull();
      expect(auth).toEqual(['Bearer static-token', 'Bearer static-token']);
    } else {
      expect(queries[1]!.get('token')).toBe('static-token');
    }
    expect(queries[1]!.get('envelope')).toBe('1');
    client.close();
  });

  it('stops on HTTP 401', async () => {
    const url = await start((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'unauthorized', message: 'bad token' } }));
    });
    const client = new HeraldClient({ url, token: 't', shareConnection: false, sseReader, backoff: { initialDelay: 20, jitter: 0 } });
    await vi.waitFor(() => expect(client.status).toBe('closed'), { timeout: 5000 });
    expect(client.state.closeReason).toBe('http_401');
    expect(client.state.error).toMatchObject({ kind: 'http', status: 401 });
    expect(client.state.error).toBeInstanceOf(HeraldAuthError);
    // Only the fetch reader can read the hub's error body.
    if (sseReader === 'fetch') expect(client.state.error).toMatchObject({ code: 'unauthorized', message: expect.stringContaining('bad token') });
  });
});

describe('the fetch reader against a loopback server', () => {
  it('waits at least Retry-After after a 429 and a 503, then connects', async () => {
    const at: number[] = [];
    const url = await start((_req, res, n) => {
      at.push(Date.now());
      if (n === 0) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        return res.end(JSON.stringify({ error: { code: 'rate_limited', message: 'slow down' } }));
      }
      if (n === 1) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        return res.end(JSON.stringify({ error: { code: 'too_many_connections', message: 'full' } }));
      }
      sse(res)('connected', { connectionId: 'c' });
    });
    const errors: unknown[] = [];
    const client = new HeraldClient({ url, shareConnection: false, backoff: { initialDelay: 10, jitter: 0 } });
    client.onError((e) => errors.push(e));
    await vi.waitFor(() => expect(client.connectionId).toBe('c'), { timeout: 8000 });
    expect(at).toHaveLength(3);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(950);
    expect(errors).toMatchObject([
      { kind: 'http', status: 429, code: 'rate_limited', retryAfterMs: 1000 },
      { kind: 'http', status: 503, code: 'too_many_connections', retryAfterMs: 1000 },
    ]);
    client.close();
  });

  it('after disconnected with "backoff" advice, waits at least the stream\'s retry: hint', async () => {
    const at: number[] = [];
    const url = await start((_req, res, n) => {
      at.push(Date.now());
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      send('connected', { connectionId: `c${n}` });
      if (n === 0) {
        // As the hub at shutdown: a spread retry hint, then disconnected.
        res.write('retry: 1200\n');
        send('disconnected', { reason: 'server_shutdown', reconnect: 'backoff' });
        res.end();
      }
    });
    const client = new HeraldClient({ url, shareConnection: false, envelope: false, backoff: { initialDelay: 10, jitter: 0 } });
    await vi.waitFor(() => expect(client.connectionId).toBe('c1'), { timeout: 5000 });
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(1150);
    client.close();
  });

  it('treats a 200 that is not an event stream as a failed attempt', async () => {
    const url = await start((_req, res, n) => {
      if (n === 0) {
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html>app shell</html>');
      }
      sse(res)('connected', { connectionId: 'ok' });
    });
    const errors: unknown[] = [];
    const client = new HeraldClient({ url, shareConnection: false, backoff: { initialDelay: 10, jitter: 0 } });
    client.onError((e) => errors.push(e));
    await vi.waitFor(() => expect(client.connectionId).toBe('ok'), { timeout: 5000 });
    expect(errors).toMatchObject([{ kind: 'http', status: 200, code: 'not_event_stream' }]);
    client.close();
  });

  it('unwraps enveloped events of any name, keeps their ids, and passes named events of an older hub', async () => {
    const url = await start((req, res) => {
      expect(new URL(req.url!, 'http://x').searchParams.get('envelope')).toBe('1');
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const env = (o: unknown, id?: string) => res.write(`${id ? `id: ${id}\n` : ''}data: ${JSON.stringify(o)}\n\n`);
      env({ id: 'e-0', event: 'connected', data: { connectionId: 'c1' } }, 'e-0');
      env({ id: 'e-1', event: 'order_update', data: { orderId: '123' } }, 'e-1');
      env({ event: 'heartbeat', data: { ts: 1 } });
      env({ id: 'e-2', event: 'note', data: '42' }, 'e-2');
      // A plain named event (as from a hub without envelope=1) still arrives.
      res.write('id: e-3\nevent: legacy\ndata: {"x":1}\n\n');
      // A `message` that is not an envelope stays a `message`.
      res.write('id: e-4\ndata: {"hello":"world"}\n\n');
    });
    const got: [string, unknown, string | undefined][] = [];
    const client = new HeraldClient({ url, shareConnection: false, livenessTimeout: 0 });
    client.on('*', (data, ev) => got.push([ev.event, data, ev.id]));
    await vi.waitFor(() => expect(got.length).toBe(6), { timeout: 5000 });
    expect(got).toEqual([
      ['connected', { connectionId: 'c1' }, undefined],
      ['order_update', { orderId: '123' }, 'e-1'],
      ['heartbeat', { ts: 1 }, undefined],
      ['note', '42', 'e-2'],
      ['legacy', { x: 1 }, 'e-3'],
      ['message', { hello: 'world' }, 'e-4'],
    ]);
    expect(client.lastEventId).toBe('e-4');
    client.close();
  });
});
