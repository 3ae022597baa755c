/**
 * Tab sharing with an injectable Web Locks shim and Node's real BroadcastChannel.
 * Each "tab" gets its own fake EventSource class, lock view and channel class.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient, type HeraldClientOptions } from '../src/client.js';
import {
  defaultShareConnection,
  deriveShareKey,
  detectSharingSupport,
  type BroadcastChannelConstructor,
} from '../src/sharing.js';
import { createFakeEventSource, type FakeEventSourceClass } from './helpers/fake-eventsource.js';
import { FakeLockManager } from './helpers/fake-locks.js';

interface Tab {
  name: string;
  ES: FakeEventSourceClass;
  client: HeraldClient;
  kill(): void;
}

const tabs: Tab[] = [];

function openTab(locks: FakeLockManager, name: string, opts: Partial<HeraldClientOptions> = {}): Tab {
  const ES = createFakeEventSource();
  const channels: BroadcastChannel[] = [];
  class TabChannel extends BroadcastChannel {
    constructor(n: string) {
      super(n);
      channels.push(this);
    }
  }
  const client = new HeraldClient({
    url: 'http://127.0.0.1:8080',
    userId: 'alice',
    channels: ['orders'],
    EventSource: ES,
    shareConnection: true,
    locks: locks.forTab(name),
    BroadcastChannel: TabChannel as unknown as BroadcastChannelConstructor,
    backoff: { initialDelay: 10, maxDelay: 50, jitter: 0 },
    livenessTimeout: 0,
    ...opts,
  });
  const tab: Tab = {
    name,
    ES,
    client,
    kill() {
      // What the browser does when a tab dies: its locks go, its channels and connections vanish.
      locks.killTab(name);
      for (const c of channels) c.close();
      for (const i of ES.instances) i.close();
    },
  };
  tabs.push(tab);
  return tab;
}

function esCount(...ts: Tab[]) {
  return ts.reduce((n, t) => n + t.ES.instances.length, 0);
}

afterEach(() => {
  for (const t of tabs.splice(0)) t.client.close();
});

describe('deriveShareKey', () => {
  const base = { url: 'http://h', userId: 'alice', username: 'Alice', channels: ['a', 'b'] };

  it('ignores channel order, duplicates and a trailing slash', () => {
    expect(deriveShareKey(base)).toBe(deriveShareKey({ ...base, url: 'http://h/', channels: 'b, a,a' }));
  });

  it('differs per url, userId, username, channels and params', () => {
    const k = deriveShareKey(base);
    expect(deriveShareKey({ ...base, url: 'http://other' })).not.toBe(k);
    expect(deriveShareKey({ ...base, userId: 'bob' })).not.toBe(k);
    expect(deriveShareKey({ ...base, username: 'Al' })).not.toBe(k);
    expect(deriveShareKey({ ...base, channels: ['a'] })).not.toBe(k);
    expect(deriveShareKey({ ...base, params: { x: 1 } })).not.toBe(k);
    expect(deriveShareKey({ ...base, path: '/other' })).not.toBe(k);
    expect(k).toMatch(/^herald:[0-9a-f]{16}$/);
  });
});

describe('sharing support detection and fallback', () => {
  it('is off by default in Node (no window)', () => {
    expect(defaultShareConnection()).toBe(false);
  });

  it('needs both Web Locks and BroadcastChannel', () => {
    const locks = new FakeLockManager().forTab('x');
    expect(detectSharingSupport({ locks })).toBeDefined(); // Node has a global BroadcastChannel
    expect(detectSharingSupport({})).toBeUndefined(); // no navigator.locks in Node 20
  });

  it('falls back to one connection per tab without Web Locks', () => {
    const ES = createFakeEventSource();
    const c = new HeraldClient({ url: 'http://h', EventSource: ES, shareConnection: true, livenessTimeout: 0 });
    try {
      expect(c.role).toBe('none');
      expect(c.shareKey).toBeUndefined();
      expect(ES.instances).toHaveLength(1);
    } finally {
      c.close();
    }
  });

  it('falls back without BroadcastChannel', () => {
    const g = globalThis as { BroadcastChannel?: unknown };
    const saved = g.BroadcastChannel;
    delete g.BroadcastChannel;
    try {
      const ES = createFakeEventSource();
      const c = new HeraldClient({
        url: 'http://h',
        EventSource: ES,
        shareConnection: true,
        locks: new FakeLockManager().forTab('t'),
        livenessTimeout: 0,
      });
      expect(c.role).toBe('none');
      expect(ES.instances).toHaveLength(1);
      c.close();
    } finally {
      g.BroadcastChannel = saved;
    }
  });
});

describe('leader / follower', () => {
  it('elects one leader; only the leader opens an EventSource', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    expect(b.client.role).toBe('follower');
    expect(a.ES.instances).toHaveLength(1);
    expect(b.ES.instances).toHaveLength(0);
    expect(locks.holder(`${a.client.shareKey}:leader`)).toBe('A');
    expect(a.client.shareKey).toBe(b.client.shareKey);
  });

  it('re-broadcasts events and status to followers', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    const got: unknown[] = [];
    b.client.on('notification', (data, ev) => got.push([data, ev.id, ev.event]));
    // The follower's name reaches the leader over the channel (EventSource only delivers listened names).
    await vi.waitFor(() => expect(a.ES.last!.listenerCount('notification')).toBe(1));
    const es = a.ES.last!;
    es.open();
    es.emit('connected', { connectionId: 'conn-A' });
    es.emit('notification', { title: 'hi' }, 'ep-1');
    await vi.waitFor(() => expect(got).toEqual([[{ title: 'hi' }, 'ep-1', 'notification']]));
    expect(b.client.status).toBe('open');
    expect(b.client.connectionId).toBe('conn-A');
    expect(b.client.lastEventId).toBe('ep-1');
  });

  it("registers followers' event names on the leader's EventSource", async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    const h = vi.fn();
    b.client.on('orders.shipped', h);
    await vi.waitFor(() => expect(a.ES.last!.listenerCount('orders.shipped')).toBe(1));
    a.ES.last!.open();
    a.ES.last!.emit('orders.shipped', { id: 7 }, 'ep-1');
    await vi.waitFor(() => expect(h).toHaveBeenCalledWith({ id: 7 }, expect.objectContaining({ id: 'ep-1' })));
  });

  it('names given in the `events` option reach the leader with the hello', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    openTab(locks, 'B', { events: ['alert', 'update'] });
    await vi.waitFor(() => {
      expect(a.ES.last!.listenerCount('alert')).toBe(1);
      expect(a.ES.last!.listenerCount('update')).toBe(1);
    });
  });

  it('a late follower gets the current state', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    a.ES.last!.open();
    a.ES.last!.emit('connected', { connectionId: 'conn-A' });
    a.ES.last!.emit('notification', {}, 'ep-4'); // nobody listens: skipped by EventSource...
    a.ES.last!.emit('heartbeat', { ts: 1 }); // ...but its id is the stream's resume point
    expect(a.client.lastEventId).toBe('ep-4');
    const c = openTab(locks, 'C');
    await vi.waitFor(() => expect(c.client.status).toBe('open'));
    expect(c.client.connectionId).toBe('conn-A');
    expect(c.client.lastEventId).toBe('ep-4');
    expect(c.ES.instances).toHaveLength(0);
  });

  it('when the leader tab dies, a follower takes over and resumes from its last event id', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    const titles: string[] = [];
    b.client.on('notification', (d: { title: string }) => titles.push(d.title));
    await vi.waitFor(() => expect(a.ES.last!.listenerCount('notification')).toBe(1));
    a.ES.last!.open();
    a.ES.last!.emit('notification', { title: 'one' }, 'ep-1');
    a.ES.last!.emit('notification', { title: 'two' }, 'ep-2');
    await vi.waitFor(() => expect(b.client.lastEventId).toBe('ep-2'));

    a.kill();
    await vi.waitFor(() => expect(b.client.role).toBe('leader'));
    expect(b.ES.instances).toHaveLength(1);
    expect(b.ES.last!.query.get('lastEventId')).toBe('ep-2');
    expect(b.ES.last!.query.get('userId')).toBe('alice');
    expect(b.client.status).toBe('reconnecting');
    b.ES.last!.open();
    expect(b.client.status).toBe('open');
    b.ES.last!.emit('notification', { title: 'three' }, 'ep-3');
    expect(titles).toEqual(['one', 'two', 'three']);
  });

  it('the new leader serves the remaining followers', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    const c = openTab(locks, 'C');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    const h = vi.fn();
    c.client.on('orders.shipped', h);
    a.kill();
    await vi.waitFor(() => expect(b.client.role).toBe('leader'));
    await vi.waitFor(() => expect(b.ES.last!.listenerCount('orders.shipped')).toBe(1));
    b.ES.last!.open();
    b.ES.last!.emit('orders.shipped', { n: 1 }, 'ep-1');
    await vi.waitFor(() => expect(h).toHaveBeenCalledTimes(1));
    expect(c.client.role).toBe('follower');
    await vi.waitFor(() => expect(c.client.status).toBe('open'));
    expect(esCount(a, b, c)).toBe(1 + 1);
  });

  it('when the leader closes, a follower takes over', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    a.ES.last!.open();
    await vi.waitFor(() => expect(b.client.status).toBe('open'));
    a.client.close();
    expect(a.ES.last!.closed).toBe(true);
    await vi.waitFor(() => expect(b.client.role).toBe('leader'));
    expect(b.ES.instances).toHaveLength(1);
    expect(b.client.status).toBe('reconnecting');
  });

  it('a follower reconnect() asks the leader to reconnect', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    a.ES.last!.open();
    b.client.reconnect();
    await vi.waitFor(() => expect(a.ES.instances).toHaveLength(2));
    expect(a.ES.instances[0]!.closed).toBe(true);
  });

  it('a terminal stop (token_expired, static token) closes every tab', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A', { token: 'static' });
    const b = openTab(locks, 'B', { token: 'static' });
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    a.ES.last!.open();
    a.ES.last!.emit('disconnected', { reason: 'token_expired', message: 'expired' });
    expect(a.client.status).toBe('closed');
    await vi.waitFor(() => expect(b.client.status).toBe('closed'));
    expect(b.client.state.closeReason).toBe('token_expired');
    await new Promise((r) => setTimeout(r, 30));
    // B may have been granted the lock before A's message arrived; it must not stay connected.
    expect(b.ES.open).toHaveLength(0);
    expect(b.client.status).toBe('closed');
    const lock = `${a.client.shareKey}:leader`;
    expect(locks.holder(lock)).toBeUndefined();
    expect(locks.queued(lock)).toBe(0);
  });

  it('tabs with different options do not share', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A', { channels: ['orders'] });
    const b = openTab(locks, 'B', { channels: ['news'] });
    const c = openTab(locks, 'C', { userId: 'bob', channels: ['orders'] });
    await vi.waitFor(() => {
      expect(a.client.role).toBe('leader');
      expect(b.client.role).toBe('leader');
      expect(c.client.role).toBe('leader');
    });
    expect(new Set([a, b, c].map((t) => t.client.shareKey)).size).toBe(3);
    expect(esCount(a, b, c)).toBe(3);
  });

  it('closing a waiting follower withdraws its lock request', async () => {
    const locks = new FakeLockManager();
    const a = openTab(locks, 'A');
    const b = openTab(locks, 'B');
    await vi.waitFor(() => expect(a.client.role).toBe('leader'));
    const lock = `${a.client.shareKey}:leader`;
    expect(locks.queued(lock)).toBe(1);
    b.client.close();
    expect(locks.queued(lock)).toBe(0);
    a.client.close();
    await vi.waitFor(() => expect(locks.holder(lock)).toBeUndefined());
    expect(b.ES.instances).toHaveLength(0);
  });
});

describe('lock manager failure', () => {
  it('leads without the lock when the lock manager is unusable', async () => {
    const ES = createFakeEventSource();
    const broken = {
      request: () => {
        throw new Error('SecurityError');
      },
    };
    const c = new HeraldClient({
      url: 'http://h',
      EventSource: ES,
      shareConnection: true,
      locks: broken,
      livenessTimeout: 0,
    });
    try {
      expect(c.role).toBe('leader');
      expect(ES.instances).toHaveLength(1);
    } finally {
      c.close();
    }
    const rejecting = { request: () => Promise.reject(new Error('nope')) };
    const d = new HeraldClient({ url: 'http://h', EventSource: ES, shareConnection: true, locks: rejecting, livenessTimeout: 0 });
    try {
      await vi.waitFor(() => expect(d.role).toBe('leader'));
      expect(ES.instances).toHaveLength(2);
    } finally {
      d.close();
    }
  });
});
