/**
 * HeraldPublisher's request shapes and pure retry logic, against a tiny loopback server that
 * records what it receives. What the hub answers (error codes and statuses, 429/503, timeouts,
 * refused connections) and how the publisher retries it is tested against the real hub in
 * publisher.hub.test.ts, never against this fake.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  HeraldError,
  HeraldPublisher,
  OutcomeUnknownError,
  isConnectFailure,
  isNotApplied,
  isPublishItemError,
  isRetryable,
  parseRetryAfter,
  withSeedStats,
  type HeraldStats,
} from '../src/publisher.js';

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

describe('withSeedStats', () => {
  const base = { connections: 3, users: 2, anonymousConnections: 0, channels: {}, eventsPublished: 0, eventsDelivered: 0, evictedSlowConsumers: 0, uptimeSeconds: 1 };
  it('keeps the hub\'s own totalConnections / uniqueUsers', () => {
    expect(withSeedStats({ ...base, totalConnections: 9, uniqueUsers: 4 } as HeraldStats)).toMatchObject({ totalConnections: 9, uniqueUsers: 4 });
  });
  it('uses the cluster block of an older Redis hub, else the node figures', () => {
    const clustered = { ...base, cluster: { connections: 7, users: 5 } } as unknown as HeraldStats;
    expect(withSeedStats(clustered)).toMatchObject({ connections: 3, totalConnections: 7, uniqueUsers: 5 });
    expect(withSeedStats(base as HeraldStats)).toMatchObject({ totalConnections: 3, uniqueUsers: 2 });
  });
});

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
    await new HeraldPublisher({ url: `${base}/herald/` }).broadcastMessage('e', null);
    expect(requests[0]!.headers['authorization']).toBeUndefined();
    expect(requests[0]!.url).toBe('/herald/api/sse/message');
  });

  it('adds custom headers', async () => {
    await publisher({ headers: { 'x-request-id': 'r1' } }).broadcastMessage('e', 1);
    expect(requests[0]!.headers['x-request-id']).toBe('r1');
  });

  it('helpers build the bodies of the wire contract (issue 15)', async () => {
    const p = publisher();
    await p.notifyUser('u1', 'Your order shipped', 'notification');
    await p.notifyUser('u1', 'Shipped', 'order_update', { orderId: '123' });
    await p.notifyUser('u1', 'Hi');
    await p.notifyUser('u1', 'Count', 'tick', 5);
    await p.notifyUser('u1', 'Null', 'tick', null);
    await p.notifyAll('Maintenance at 5', 'alert');
    await p.notifyAll('Deploy', undefined, { version: 2 });
    await p.sendToUsers('notification', { title: 'New Message' }, ['user1', 'user2']);
    await p.sendToUsers(['alice', 'bob'], 'ping', 2); // the deprecated 0.1 order
    await p.sendToChannel('orders', 'order.created', { id: 9 });
    await p.broadcastMessage('system-update', { message: 'soon', type: 'warning' });
    await p.broadcastMessage({ type: 'hello', data: 'world' });
    await p.sendToUser('user123', { type: 'order_update', data: { orderId: '123', status: 'shipped' } });
    await p.sendToUser('user123', 'profile:updated', { field: 'avatar' });
    await p.sendToConnection('c1', { type: 'x', data: 1 });
    await p.sendToClient('c2', 'user:message', { message: 'Hello' });
    await p.sendAlert('alice', 'Disk full', 'warning');
    await p.sendAlert('alice', 'FYI');
    await p.sendUpdate('alice', 'profile', { name: 'A' });
    await p.sendNotification('user123', 'Welcome!', 'Welcome to our platform', 'success');
    await p.sendNotification('bob', 'T', 'M');
    expect(requests.map((r) => r.body)).toEqual([
      { event: 'notification', data: { message: 'Your order shipped' }, users: ['u1'] },
      { event: 'order_update', data: { message: 'Shipped', orderId: '123' }, users: ['u1'] },
      { event: 'notification', data: { message: 'Hi' }, users: ['u1'] },
      { event: 'tick', data: { message: 'Count', data: 5 }, users: ['u1'] },
      { event: 'tick', data: { message: 'Null' }, users: ['u1'] },
      { event: 'alert', data: { message: 'Maintenance at 5' }, broadcast: true },
      { event: 'notification', data: { message: 'Deploy', version: 2 }, broadcast: true },
      { event: 'notification', data: { title: 'New Message' }, users: ['user1', 'user2'] },
      { event: 'ping', data: 2, users: ['alice', 'bob'] },
      { event: 'order.created', data: { id: 9 }, channels: ['orders'] },
      { event: 'system-update', data: { message: 'soon', type: 'warning' }, broadcast: true },
      { event: 'hello', data: 'world', broadcast: true },
      { event: 'order_update', data: { orderId: '123', status: 'shipped' }, users: ['user123'] },
      { event: 'profile:updated', data: { field: 'avatar' }, users: ['user123'] },
      { event: 'x', data: 1, connections: ['c1'] },
      { event: 'user:message', data: { message: 'Hello' }, connections: ['c2'] },
      { event: 'alert', data: { message: 'Disk full', severity: 'warning' }, users: ['alice'] },
      { event: 'alert', data: { message: 'FYI', severity: 'info' }, users: ['alice'] },
      { event: 'update', data: { type: 'profile', payload: { name: 'A' } }, users: ['alice'] },
      { event: 'notification', data: { title: 'Welcome!', message: 'Welcome to our platform', type: 'success' }, users: ['user123'] },
      { event: 'notification', data: { title: 'T', message: 'M', type: 'info' }, users: ['bob'] },
    ]);
    expect(requests.every((r) => r.url === '/api/sse/message' && r.method === 'POST')).toBe(true);
  });

  it('the eight domain helpers of seed 002 over sendEntityNotification', async () => {
    const p = publisher();
    await p.sendPaymentNotification('payment123', 'completed', { amount: 99.99, currency: 'USD' }, 'user', 'user456');
    await p.sendJobNotification('video-processing', 'completed', { videoId: 'video123' }, 'user', 'user789');
    await p.sendUserAccountNotification('user123', 'created', { email: 'j@example.com' }, 'user', 'user123');
    await p.sendSystemHealthNotification('database', 'warning', { message: 'High memory' }, 'channel', 'system-monitoring');
    await p.sendVideoProcessingNotification('video123', 'completed', { quality: '4K' }, 'users', ['a', 'b']);
    await p.sendDataExportNotification('export123', 'completed', { format: 'CSV' }, 'users', 'a, b');
    await p.sendPostUpdateNotification('post123', 'created', { title: 'New' }, 'broadcast');
    await p.sendProfileUpdateNotification('user123', 'avatar_changed', null, 'user', 'user123');
    expect(requests.map((r) => r.body)).toEqual([
      { event: 'payment', data: { paymentId: 'payment123', status: 'completed', amount: 99.99, currency: 'USD' }, users: ['user456'] },
      { event: 'job', data: { jobType: 'video-processing', status: 'completed', videoId: 'video123' }, users: ['user789'] },
      { event: 'account', data: { userId: 'user123', status: 'created', email: 'j@example.com' }, users: ['user123'] },
      { event: 'system_health', data: { component: 'database', status: 'warning', message: 'High memory' }, channels: ['system-monitoring'] },
      { event: 'video_processing', data: { videoId: 'video123', status: 'completed', quality: '4K' }, users: ['a', 'b'] },
      { event: 'data_export', data: { exportId: 'export123', status: 'completed', format: 'CSV' }, users: ['a', 'b'] },
      { event: 'post', data: { postId: 'post123', status: 'created', title: 'New' }, broadcast: true },
      { event: 'profile', data: { userId: 'user123', status: 'avatar_changed' }, users: ['user123'] },
    ]);
    // Bad targets are caught before anything is sent.
    expect(() => p.sendPaymentNotification('p', 's', {}, 'user')).toThrow(/targetId/);
    expect(() => p.sendPaymentNotification('p', 's', {}, 'user', ['a', 'b'])).toThrow(/"users"/);
    expect(() => p.sendPaymentNotification('p', 's', {}, 'channel', ['a', 'b'])).toThrow(/channel/);
    expect(() => p.sendPaymentNotification('p', 's', {}, 'room' as never, 'x')).toThrow(/targetType/);
    expect(() => p.sendEntityNotification('nope' as never, 'p', 's', {}, 'broadcast')).toThrow(/kind/);
    expect(() => p.sendPaymentNotification('p', 's', 7, 'broadcast')).toThrow(/object/);
    expect(() => p.sendPaymentNotification('p', 's', [1], 'broadcast')).toThrow(/object/);
    expect(() => p.sendToUser('u', 42 as never)).toThrow(/\{type, data\}/);
    expect(requests).toHaveLength(8);
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
    // The seeds' names, derived from a hub that does not send them.
    expect(stats).toMatchObject({ totalConnections: 4, uniqueUsers: 2 });
    expect(requests.map((r) => [r.method, r.url, r.body])).toEqual([
      ['POST', '/api/sse/disconnect', { users: ['alice'], connections: ['c1'] }],
      ['POST', '/api/sse/disconnect-all', {}],
      ['GET', '/api/sse/stats', undefined],
    ]);
    expect(requests[2]!.headers['content-type']).toBeUndefined();
    expect(requests[2]!.headers['authorization']).toBe('Bearer secret-key');
  });
});

describe('HeraldPublisher: idempotency keys (request shape)', () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  it('every publish carries a fresh Idempotency-Key header by default', async () => {
    const p = publisher();
    await p.broadcastMessage('e', 1);
    await p.broadcastMessage('e', 1);
    const keys = requests.map((r) => r.headers['idempotency-key']);
    expect(keys[0]).toMatch(UUID);
    expect(keys[1]).toMatch(UUID);
    expect(keys[0]).not.toBe(keys[1]);
    expect(requests[0]!.body).toEqual({ event: 'e', data: 1, broadcast: true });
  });

  it('a caller key (per call, else in the body) is sent as the header, not in the body', async () => {
    const p = publisher();
    await p.broadcastMessage('e', 1, { idempotencyKey: 'call-key' });
    await p.publish({ event: 'e', data: 2, broadcast: true, idempotencyKey: 'body-key' });
    await p.publish({ event: 'e', data: 3, broadcast: true, idempotencyKey: 'body-key' }, { idempotencyKey: 'wins' });
    expect(requests.map((r) => r.headers['idempotency-key'])).toEqual(['call-key', 'body-key', 'wins']);
    expect(requests.map((r) => r.body)).toEqual([
      { event: 'e', data: 1, broadcast: true },
      { event: 'e', data: 2, broadcast: true },
      { event: 'e', data: 3, broadcast: true },
    ]);
  });

  it('idempotencyKeys: false sends no key unless the caller gives one', async () => {
    const p = publisher({ idempotencyKeys: false });
    await p.broadcastMessage('e', 1);
    await p.broadcastMessage('e', 1, { idempotencyKey: 'mine' });
    expect(requests.map((r) => r.headers['idempotency-key'])).toEqual([undefined, 'mine']);
  });

  it('publishMany gives each item its own idempotencyKey field, keeping the caller\'s', async () => {
    await publisher().publishMany([
      { event: 'a', data: 1, broadcast: true },
      { event: 'b', data: 2, broadcast: true, idempotencyKey: 'mine' },
      { event: 'c', data: 3, broadcast: true },
    ]);
    const items = requests[0]!.body as { idempotencyKey?: string }[];
    expect(items[0]!.idempotencyKey).toMatch(UUID);
    expect(items[1]!.idempotencyKey).toBe('mine');
    expect(items[2]!.idempotencyKey).toMatch(UUID);
    expect(items[0]!.idempotencyKey).not.toBe(items[2]!.idempotencyKey);
    expect(requests[0]!.headers['idempotency-key']).toBeUndefined();
    await publisher({ idempotencyKeys: false }).publishMany([{ event: 'a', data: 1, broadcast: true }]);
    expect(requests[1]!.body).toEqual([{ event: 'a', data: 1, broadcast: true }]);
  });

  it('Idempotent-Replayed: true sets `replayed` on the result', async () => {
    reply = (_r, res) => json(res, 200, { id: 'ep-9', delivered: 1 }, { 'idempotent-replayed': 'true' });
    expect(await publisher().broadcastMessage('e', 1)).toEqual({ id: 'ep-9', delivered: 1, replayed: true });
    reply = herald;
    expect(await publisher().broadcastMessage('e', 1)).not.toHaveProperty('replayed');
  });

  it('a failed publishMany() call exposes the item keys, to resend without duplicates', async () => {
    reply = (_r, res) => json(res, 400, { error: { code: 'invalid_json', message: 'm' } });
    const err = await rejection(
      publisher().publishMany([
        { event: 'a', data: 1, broadcast: true, idempotencyKey: 'k1' },
        { event: 'b', data: 2, broadcast: true },
      ]),
    );
    const sent = requests[0]!.body as { idempotencyKey: string }[];
    expect(err.idempotencyKeys).toEqual(['k1', sent[1]!.idempotencyKey]);
  });

  it('a batch answer with the wrong number of results is an invalid_response', async () => {
    reply = (_r, res) => json(res, 200, { results: [] });
    const err = await rejection(publisher().publishMany([{ event: 'a', data: 1, broadcast: true }]));
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(err.code).toBe('invalid_response');
  });
});

describe('HeraldPublisher: transport edge cases (not about what the hub answers)', () => {
  it('handles a non-JSON error body (e.g. from a proxy)', async () => {
    reply = (_r, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('upstream exploded');
    };
    const err = await rejection(publisher().broadcastMessage('e', 1));
    expect(err).toMatchObject({ status: 500, code: 'http_500', message: 'upstream exploded' });
    // A 500 may have happened after the publish: outcome unknown, not retried.
    expect(err).toBeInstanceOf(OutcomeUnknownError);
    expect(requests).toHaveLength(1);
  });

  it('a per-call timeout overrides the default', async () => {
    reply = () => {};
    const err = await rejection(publisher({ timeoutMs: 60_000, retries: 0 }).broadcastMessage('e', 1, { timeoutMs: 50 }));
    expect(err.code).toBe('timeout');
  });

  it('a caller abort is not retried', async () => {
    reply = () => {};
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await rejection(publisher({ retries: 3 }).broadcastMessage('e', 1, { signal: ac.signal }));
    expect(err).toMatchObject({ status: 0, code: 'aborted', attempts: 1 });
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

  it('isRetryable: with a key (idempotent) any transient failure, without one only "nothing was sent"', () => {
    const e = (status: number, code = 'x', cause?: unknown) => new HeraldError(status, code, 'm', { cause });
    const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) });
    const reset = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) });
    const both = { idempotent: true };
    // Nothing was sent: retried with or without a key.
    for (const err of [
      e(0, 'network_error', refused),
      e(429, 'rate_limited'),
      e(503, 'engine_unavailable'),
      e(503, 'overloaded'),
      e(503, 'shutting_down'),
    ]) {
      expect([err.code, isRetryable(err), isRetryable(err, both)]).toEqual([err.code, true, true]);
      expect(isNotApplied(err)).toBe(true);
    }
    // May have been published: retried only with a key.
    for (const err of [e(0, 'network_error', reset), e(0, 'timeout'), e(503, 'outcome_unknown'), e(503, 'http_503'), e(502), e(504)]) {
      expect([err.code, isRetryable(err), isRetryable(err, both)]).toEqual([err.code, false, true]);
      expect(isNotApplied(err)).toBe(false);
    }
    // Never.
    for (const s of [400, 401, 403, 404, 409, 413, 422, 500, 501]) {
      expect(isRetryable(e(s), both)).toBe(false);
    }
    expect(isRetryable(e(0, 'aborted'), both)).toBe(false);
    expect(isRetryable(e(200, 'invalid_response'), both)).toBe(false);
    expect(isRetryable(e(0, 'timeout'), { retryOnTimeout: true })).toBe(false); // deprecated, ignored
  });

  it('isConnectFailure looks through causes and AggregateErrors', () => {
    const code = (c: string) => Object.assign(new Error(c), { code: c });
    expect(isConnectFailure(new TypeError('fetch failed', { cause: code('ECONNREFUSED') }))).toBe(true);
    expect(isConnectFailure(new TypeError('fetch failed', { cause: new AggregateError([code('ECONNREFUSED'), code('ECONNREFUSED')]) }))).toBe(
      true,
    );
    expect(isConnectFailure(new TypeError('fetch failed', { cause: code('UND_ERR_SOCKET') }))).toBe(false);
    expect(isConnectFailure(undefined)).toBe(false);
  });

  it('requires a url', () => {
    expect(() => new HeraldPublisher({ url: '' })).toThrow(TypeError);
  });
});
