/**
 * HeraldPublisher against a tiny loopback server that answers like Herald.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HeraldError, HeraldPublisher, isPublishItemError, isRetryable, parseRetryAfter } from '../src/publisher.js';

interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

type Reply = (req: Recorded, res: ServerResponse, n: number) => void;

let server: Server;
let base: string;
let requests: Recorded[];
let reply: Reply;
const sockets = new Set<Socket>();

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** A reply that behaves like Herald for the happy paths. */
const herald: Reply = (req, res) => {
  if (req.method === 'POST' && ['/api/sse/message', '/api/sse/send', '/api/sse'].includes(req.url)) {
    return json(res, 200, { id: `ep-${requests.length}`, delivered: 2 });
  }
  if (req.method === 'POST' && req.url === '/api/sse/messages') {
    const items = req.body as { event?: string }[];
    return json(res, 200, {
      results: items.map((b, i) =>
        b.event ? { id: `ep-${i}`, delivered: 1 } : { error: { code: 'invalid_field', message: 'event is required' } },
      ),
    });
  }
  if (req.method === 'POST' && req.url === '/api/sse/disconnect') return json(res, 200, { disconnected: 3 });
  if (req.method === 'POST' && req.url === '/api/sse/disconnect-all') return json(res, 200, { disconnected: 7 });
  if (req.method === 'GET' && req.url === '/api/sse/stats') {
    return json(res, 200, {
      connections: 4,
      users: 2,
      anonymousConnections: 1,
      channels: { orders: 2 },
      eventsPublished: 10,
      eventsDelivered: 20,
      evictedSlowConsumers: 0,
      uptimeSeconds: 5,
    });
  }
  json(res, 404, { error: { code: 'not_found', message: 'no route' } });
};

beforeEach(async () => {
  requests = [];
  reply = herald;
  let n = 0;
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const rec: Recorded = { method: req.method!, url: req.url!, headers: req.headers, body: text ? JSON.parse(text) : undefined };
      requests.push(rec);
      reply(rec, res, n++);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const fast = { initialDelay: 5, maxDelay: 20, jitter: 0 };

function publisher(opts: Partial<ConstructorParameters<typeof HeraldPublisher>[0]> = {}) {
  return new HeraldPublisher({ url: base, key: 'secret-key', retryBackoff: fast, ...opts });
}

async function rejection(p: Promise<unknown>): Promise<HeraldError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HeraldError);
    return e as HeraldError;
  }
  throw new Error('expected a rejection');
}

describe('HeraldPublisher: requests', () => {
  it('publish() POSTs JSON with the bearer key and returns {id, delivered}', async () => {
    const res = await publisher().publish({ event: 'notification', data: { a: 1 }, users: ['alice'], fallback: 'none' });
    expect(res).toEqual({ id: 'ep-1', delivered: 2 });
    expect(requests).toHaveLength(1);
    const r = requests[0]!;
    expect(r.method).toBe('POST');
    expect(r.url).toBe('/api/sse/message');
    expect(r.headers['authorization']).toBe('Bearer secret-key');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['accept']).toBe('application/json');
    expect(r.body).toEqual({ event: 'notification', data: { a: 1 }, users: ['alice'], fallback: 'none' });
  });

  it('sends no Authorization header without a key, and keeps a base path prefix', async () => {
    reply = (req, res) => json(res, 200, { id: 'x', delivered: 0, path: req.url });
    await new HeraldPublisher({ url: `${base}/herald/` }).notifyAll('e', null);
    expect(requests[0]!.headers['authorization']).toBeUndefined();
    expect(requests[0]!.url).toBe('/herald/api/sse/message');
  });

  it('adds custom headers', async () => {
    await publisher({ headers: { 'x-request-id': 'r1' } }).notifyAll('e', 1);
    expect(requests[0]!.headers['x-request-id']).toBe('r1');
  });

  it('helpers build the documented bodies', async () => {
    const p = publisher();
    await p.notifyUser('alice', 'ping', { n: 1 });
    await p.sendToUsers(['alice', 'bob'], 'ping', 2);
    await p.sendToChannel('orders', 'order.created', { id: 9 });
    await p.notifyAll('maintenance', { at: 'noon' });
    await p.broadcastMessage('hello', 'world');
    await p.sendAlert('alice', 'Disk full', 'warning');
    await p.sendAlert('alice', 'FYI');
    await p.sendUpdate('alice', 'profile', { name: 'A' });
    await p.sendNotification('alice', 'Title', 'Body', 'success');
    await p.sendNotification('bob', 'T', 'B');
    expect(requests.map((r) => r.body)).toEqual([
      { event: 'ping', data: { n: 1 }, users: ['alice'] },
      { event: 'ping', data: 2, users: ['alice', 'bob'] },
      { event: 'order.created', data: { id: 9 }, channels: ['orders'] },
      { event: 'maintenance', data: { at: 'noon' }, broadcast: true },
      { event: 'hello', data: 'world', broadcast: true },
      { event: 'alert', data: { message: 'Disk full', severity: 'warning' }, users: ['alice'] },
      { event: 'alert', data: { message: 'FYI', severity: 'info' }, users: ['alice'] },
      { event: 'update', data: { type: 'profile', payload: { name: 'A' } }, users: ['alice'] },
      { event: 'notification', data: { title: 'Title', body: 'Body', kind: 'success' }, users: ['alice'] },
      { event: 'notification', data: { title: 'T', body: 'B', kind: 'info' }, users: ['bob'] },
    ]);
    expect(requests.every((r) => r.url === '/api/sse/message' && r.method === 'POST')).toBe(true);
  });

  it('publishMany() posts an array and returns per-item results', async () => {
    const out = await publisher().publishMany([
      { event: 'a', data: 1, users: ['u'] },
      { event: '', data: 2, users: ['u'] },
    ]);
    expect(requests[0]!.url).toBe('/api/sse/messages');
    expect(Array.isArray(requests[0]!.body)).toBe(true);
    expect(out.results).toHaveLength(2);
    expect(isPublishItemError(out.results[0]!)).toBe(false);
    expect(out.results[0]).toEqual({ id: 'ep-0', delivered: 1 });
    const second = out.results[1]!;
    expect(isPublishItemError(second) && second.error.code).toBe('invalid_field');
  });

  it('disconnect, disconnectAll and getStats', async () => {
    const p = publisher();
    expect(await p.disconnect({ users: ['alice'], connections: ['c1'] })).toEqual({ disconnected: 3 });
    expect(await p.disconnectAll()).toEqual({ disconnected: 7 });
    const stats = await p.getStats();
    expect(stats).toMatchObject({ connections: 4, channels: { orders: 2 }, uptimeSeconds: 5 });
    expect(requests.map((r) => [r.method, r.url, r.body])).toEqual([
      ['POST', '/api/sse/disconnect', { users: ['alice'], connections: ['c1'] }],
      ['POST', '/api/sse/disconnect-all', {}],
      ['GET', '/api/sse/stats', undefined],
    ]);
    expect(requests[2]!.headers['content-type']).toBeUndefined();
    expect(requests[2]!.headers['authorization']).toBe('Bearer secret-key');
  });
});

describe('HeraldPublisher: errors', () => {
  it('maps the JSON error body to HeraldError and does not retry 4xx', async () => {
    reply = (_r, res) => json(res, 400, { error: { code: 'invalid_field', message: 'no target' } });
    const err = await rejection(publisher({ retries: 3 }).publish({ event: 'e', data: 1 }));
    expect(err).toMatchObject({ name: 'HeraldError', status: 400, code: 'invalid_field', message: 'no target' });
    expect(requests).toHaveLength(1);
  });

  it.each([
    [401, 'unauthorized'],
    [403, 'forbidden'],
    [404, 'not_found'],
    [413, 'payload_too_large'],
    [500, 'internal'],
    [504, 'gateway_timeout'],
  ])('HTTP %i is not retried', async (status, code) => {
    reply = (_r, res) => json(res, status, { error: { code, message: 'm' } });
    const err = await rejection(publisher({ retries: 3 }).notifyAll('e', 1));
    expect(err.status).toBe(status);
    expect(err.code).toBe(code);
    expect(requests).toHaveLength(1);
  });

  it('handles a non-JSON error body', async () => {
    reply = (_r, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('upstream exploded');
    };
    const err = await rejection(publisher().notifyAll('e', 1));
    expect(err).toMatchObject({ status: 500, code: 'http_500', message: 'upstream exploded' });
  });
});

describe('HeraldPublisher: retries', () => {
  it.each([502, 503])('retries HTTP %i and then succeeds', async (status) => {
    reply = (r, res, n) => (n < 2 ? json(res, status, { error: { code: 'unavailable', message: 'later' } }) : herald(r, res, n));
    const res = await publisher({ retries: 2 }).notifyAll('e', 1);
    expect(res.delivered).toBe(2);
    expect(requests).toHaveLength(3);
    expect(requests.map((r) => r.body)).toEqual(Array(3).fill({ event: 'e', data: 1, broadcast: true }));
  });

  it('gives up after `retries` and throws the last error', async () => {
    reply = (_r, res) => json(res, 503, { error: { code: 'unavailable', message: 'down' } });
    const err = await rejection(publisher({ retries: 2 }).notifyAll('e', 1));
    expect(err).toMatchObject({ status: 503, code: 'unavailable' });
    expect(requests).toHaveLength(3);
  });

  it('retries: 0 means a single attempt', async () => {
    reply = (_r, res) => json(res, 503, { error: { code: 'unavailable', message: 'down' } });
    await rejection(publisher({ retries: 0 }).notifyAll('e', 1));
    expect(requests).toHaveLength(1);
  });

  it('honours Retry-After on 429', async () => {
    const times: number[] = [];
    reply = (r, res, n) => {
      times.push(Date.now());
      if (n === 0) return json(res, 429, { error: { code: 'rate_limited', message: 'slow down' } }, { 'retry-after': '1' });
      herald(r, res, n);
    };
    const res = await publisher({ retries: 1 }).notifyAll('e', 1);
    expect(res.id).toBeDefined();
    expect(requests).toHaveLength(2);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(900);
  });

  it('fails at once when Retry-After exceeds maxRetryAfterMs', async () => {
    reply = (_r, res) => json(res, 429, { error: { code: 'too_many_connections', message: 'x' } }, { 'retry-after': '120' });
    const err = await rejection(publisher({ retries: 3, maxRetryAfterMs: 5000 }).notifyAll('e', 1));
    expect(err).toMatchObject({ status: 429, code: 'too_many_connections', retryAfterMs: 120_000 });
    expect(requests).toHaveLength(1);
  });

  it('retries network errors (no response) and reports network_error', async () => {
    // A port with nothing listening: take one from a server we close at once.
    const tmp = createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    const port = (tmp.address() as AddressInfo).port;
    await new Promise<void>((r) => tmp.close(() => r()));
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const err = await rejection(
      new HeraldPublisher({ url: `http://127.0.0.1:${port}`, retries: 2, retryBackoff: fast, fetch: counting }).notifyAll('e', 1),
    );
    expect(err).toMatchObject({ status: 0, code: 'network_error' });
    expect(calls).toBe(3);
  });

  it('times out, and does NOT retry a timeout by default (publish is not idempotent)', async () => {
    reply = () => {
      /* never answer */
    };
    const started = Date.now();
    const err = await rejection(publisher({ timeoutMs: 100, retries: 3 }).notifyAll('e', 1));
    expect(err).toMatchObject({ status: 0, code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(requests).toHaveLength(1);
  });

  it('retries timeouts only with retryOnTimeout', async () => {
    reply = (r, res, n) => {
      if (n < 1) return; // first attempt hangs
      herald(r, res, n);
    };
    const res = await publisher({ timeoutMs: 100, retries: 2, retryOnTimeout: true }).notifyAll('e', 1);
    expect(res.delivered).toBe(2);
    expect(requests).toHaveLength(2);
  });

  it('a per-call timeout overrides the default', async () => {
    reply = () => {};
    const err = await rejection(publisher({ timeoutMs: 60_000 }).notifyAll('e', 1, { timeoutMs: 50 }));
    expect(err.code).toBe('timeout');
  });

  it('a caller abort is not retried', async () => {
    reply = () => {};
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await rejection(publisher({ retries: 3, retryOnTimeout: true }).notifyAll('e', 1, { signal: ac.signal }));
    expect(err).toMatchObject({ status: 0, code: 'aborted' });
    expect(requests).toHaveLength(1);
  });
});

describe('publisher helpers', () => {
  it('parseRetryAfter', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Mon, 01 Jan 2023 00:00:05 GMT', now)).toBe(0);
  });

  it('isRetryable', () => {
    const e = (status: number, code = 'x') => new HeraldError(status, code, 'm');
    expect(isRetryable(e(0, 'network_error'))).toBe(true);
    expect(isRetryable(e(0, 'timeout'))).toBe(false);
    expect(isRetryable(e(0, 'timeout'), { retryOnTimeout: true })).toBe(true);
    expect(isRetryable(e(0, 'aborted'), { retryOnTimeout: true })).toBe(false);
    for (const s of [429, 502, 503]) expect(isRetryable(e(s))).toBe(true);
    for (const s of [400, 401, 403, 404, 409, 413, 422, 500, 501, 504]) expect(isRetryable(e(s))).toBe(false);
  });

  it('requires a url', () => {
    expect(() => new HeraldPublisher({ url: '' })).toThrow(TypeError);
  });
});
