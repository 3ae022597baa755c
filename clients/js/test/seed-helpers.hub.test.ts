/**
 * The seeds' publisher helpers against the real herald binary: every helper of issue 15's wire
 * contract, received by real subscribers (`HeraldClient` in Node, default reader: fetch with
 * `envelope=1`), which register no event names at all: `on('*')` must see each event, with the
 * name and data the contract says, and `delivered` must count the right connections. A
 * trailing marker per subscriber proves nothing else arrived, and nothing twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeraldClient } from '../src/client.js';
import { HeraldPublisher } from '../src/publisher.js';
import type { HeraldEvent } from '../src/types.js';
import { requireHeraldBin, startHerald, waitUntil, within, type HeraldProcess } from './helpers/hub.js';

let hub: HeraldProcess;
let publisher: HeraldPublisher;
const clients: HeraldClient[] = [];

beforeAll(async () => {
  requireHeraldBin();
  hub = await startHerald({ args: [] });
  publisher = new HeraldPublisher({ url: hub.url, retries: 0 });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await hub?.stop('SIGKILL', 5_000);
});

interface Sub {
  client: HeraldClient;
  events: HeraldEvent[];
  /** Events other than `connected` and `heartbeat`. */
  received(): [string, unknown][];
  until(what: string, check: () => boolean, ms?: number): Promise<void>;
}

async function sub(options: { userId?: string; channels?: string[] }): Promise<Sub> {
  const client = new HeraldClient({ url: hub.url, shareConnection: false, livenessTimeout: 0, ...options });
  clients.push(client);
  const events: HeraldEvent[] = [];
  const waiters = new Set<() => void>();
  client.on('*', (_d, ev) => {
    events.push(ev as HeraldEvent);
    waiters.forEach((w) => w());
  });
  const until = (what: string, check: () => boolean, ms = 10_000) =>
    within(
      ms,
      `${what}: got ${JSON.stringify(events.map((e) => e.event))}`,
      new Promise<void>((resolve) => {
        const w = () => check() && (waiters.delete(w), resolve());
        waiters.add(w);
        w();
      }),
    );
  await until('connected', () => client.connectionId !== undefined);
  return {
    client,
    events,
    received: () => events.filter((e) => e.event !== 'connected' && e.event !== 'heartbeat').map((e) => [e.event, e.data]),
    until,
  };
}

/** Publishes a marker to `s`'s connection and waits for it: everything before it has arrived. */
async function drain(s: Sub, tag: string): Promise<void> {
  await publisher.sendToConnection(s.client.connectionId!, 'marker', { tag });
  await s.until(`marker ${tag}`, () => s.events.some((e) => e.event === 'marker' && (e.data as { tag: string }).tag === tag));
}

function noDuplicates(s: Sub): void {
  const ids = s.events.map((e) => e.id).filter((id): id is string => !!id);
  expect(new Set(ids).size).toBe(ids.length);
}

describe('seed helpers against the real hub', () => {
  it('every helper: name, data and delivered as the wire contract says', async () => {
    const u1 = await sub({ userId: 'u1', channels: ['system-monitoring'] });
    const u1b = await sub({ userId: 'u1' }); // a second tab
    const u2 = await sub({ userId: 'u2' });
    const anon = await sub({});

    const results = [
      await publisher.notifyUser('u1', 'Your order shipped', 'notification'),
      await publisher.notifyUser('u1', 'Shipped', 'order_update', { orderId: '123' }),
      await publisher.notifyAll('Maintenance at 5', 'alert'),
      await publisher.sendToUsers('notification', { title: 'New Message', content: 'x' }, ['u1', 'u2']),
      await publisher.sendUpdate('u2', 'profile', { name: 'A' }),
      await publisher.sendAlert('u2', 'Disk full', 'warning'),
      await publisher.sendNotification('u2', 'Welcome!', 'Welcome to our platform', 'success'),
      await publisher.broadcastMessage('system-update', { message: 'soon', type: 'warning' }),
      await publisher.sendToUser('u2', { type: 'order_update', data: { orderId: '9', status: 'shipped' } }),
      await publisher.sendToUser('u2', 'profile:updated', { field: 'avatar' }),
      await publisher.sendToConnection(u1b.client.connectionId!, { type: 'just-this-tab', data: 1 }),
      await publisher.sendToClient(anon.client.connectionId!, 'user:message', { message: 'Hello' }),
    ];
    expect(results.map((r) => r.delivered)).toEqual([2, 2, 4, 3, 1, 1, 1, 4, 1, 1, 1, 1]);
    expect(results.every((r) => typeof r.id === 'string' && r.id.length > 0)).toBe(true);

    for (const [s, tag] of [[u1, 'u1'], [u1b, 'u1b'], [u2, 'u2'], [anon, 'anon']] as const) await drain(s, tag);

    const u1Expected: [string, unknown][] = [
      ['notification', { message: 'Your order shipped' }],
      ['order_update', { message: 'Shipped', orderId: '123' }],
      ['alert', { message: 'Maintenance at 5' }],
      ['notification', { title: 'New Message', content: 'x' }],
      ['system-update', { message: 'soon', type: 'warning' }],
    ];
    expect(u1.received()).toEqual([...u1Expected, ['marker', { tag: 'u1' }]]);
    expect(u1b.received()).toEqual([...u1Expected, ['just-this-tab', 1], ['marker', { tag: 'u1b' }]]);
    expect(u2.received()).toEqual([
      ['alert', { message: 'Maintenance at 5' }],
      ['notification', { title: 'New Message', content: 'x' }],
      ['update', { type: 'profile', payload: { name: 'A' } }],
      ['alert', { message: 'Disk full', severity: 'warning' }],
      ['notification', { title: 'Welcome!', message: 'Welcome to our platform', type: 'success' }],
      ['system-update', { message: 'soon', type: 'warning' }],
      ['order_update', { orderId: '9', status: 'shipped' }],
      ['profile:updated', { field: 'avatar' }],
      ['marker', { tag: 'u2' }],
    ]);
    expect(anon.received()).toEqual([
      ['alert', { message: 'Maintenance at 5' }],
      ['system-update', { message: 'soon', type: 'warning' }],
      ['user:message', { message: 'Hello' }],
      ['marker', { tag: 'anon' }],
    ]);
    for (const s of [u1, u1b, u2, anon]) noDuplicates(s);
    for (const s of [u1, u1b, u2, anon]) s.client.close();
  });

  it('the eight domain helpers, to a user, users, a channel and everyone', async () => {
    const a = await sub({ userId: 'dom-a', channels: ['content-updates'] });
    const b = await sub({ userId: 'dom-b' });
    const calls = [
      await publisher.sendPaymentNotification('payment123', 'completed', { amount: 99.99, currency: 'USD' }, 'user', 'dom-a'),
      await publisher.sendJobNotification('video-processing', 'completed', { videoId: 'v1' }, 'users', ['dom-a', 'dom-b']),
      await publisher.sendUserAccountNotification('dom-b', 'created', { email: 'b@example.com' }, 'user', 'dom-b'),
      await publisher.sendSystemHealthNotification('database', 'warning', { metrics: { memoryUsage: '85%' } }, 'channel', 'content-updates'),
      await publisher.sendVideoProcessingNotification('video123', 'completed', { quality: '4K' }, 'user', 'dom-a'),
      await publisher.sendDataExportNotification('export123', 'completed', { format: 'CSV' }, 'users', 'dom-a,dom-b'),
      await publisher.sendPostUpdateNotification('post123', 'created', { title: 'New Blog Post' }, 'channel', 'content-updates'),
      await publisher.sendProfileUpdateNotification('dom-b', 'avatar_changed', { avatarUrl: '/a.jpg' }, 'broadcast'),
    ];
    // The broadcast reaches every connection of the hub, these two among them.
    expect(calls.slice(0, 7).map((r) => r.delivered)).toEqual([1, 2, 1, 1, 1, 2, 1]);
    expect(calls[7]!.delivered).toBeGreaterThanOrEqual(2);
    await drain(a, 'a');
    await drain(b, 'b');
    expect(a.received()).toEqual([
      ['payment', { paymentId: 'payment123', status: 'completed', amount: 99.99, currency: 'USD' }],
      ['job', { jobType: 'video-processing', status: 'completed', videoId: 'v1' }],
      ['system_health', { component: 'database', status: 'warning', metrics: { memoryUsage: '85%' } }],
      ['video_processing', { videoId: 'video123', status: 'completed', quality: '4K' }],
      ['data_export', { exportId: 'export123', status: 'completed', format: 'CSV' }],
      ['post', { postId: 'post123', status: 'created', title: 'New Blog Post' }],
      ['profile', { userId: 'dom-b', status: 'avatar_changed', avatarUrl: '/a.jpg' }],
      ['marker', { tag: 'a' }],
    ]);
    expect(b.received()).toEqual([
      ['job', { jobType: 'video-processing', status: 'completed', videoId: 'v1' }],
      ['account', { userId: 'dom-b', status: 'created', email: 'b@example.com' }],
      ['data_export', { exportId: 'export123', status: 'completed', format: 'CSV' }],
      ['profile', { userId: 'dom-b', status: 'avatar_changed', avatarUrl: '/a.jpg' }],
      ['marker', { tag: 'b' }],
    ]);
    noDuplicates(a);
    noDuplicates(b);
    a.client.close();
    b.client.close();
  });

  it('getStats answers totalConnections and uniqueUsers', async () => {
    // The earlier tests' clients are closed: wait until the hub has seen them go.
    await waitUntil('no connection left', async () => (await publisher.getStats()).totalConnections === 0);
    const x1 = await sub({ userId: 'stats-x' });
    const x2 = await sub({ userId: 'stats-x' });
    const y = await sub({ userId: 'stats-y' });
    const anon = await sub({});
    const stats = await publisher.getStats();
    expect(stats).toMatchObject({ totalConnections: 4, uniqueUsers: 2, connections: 4, users: 2 });
    for (const s of [x1, x2, y, anon]) s.client.close();
  });
});
