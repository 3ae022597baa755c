// @vitest-environment happy-dom
/** Browser-only behaviour, in a DOM environment. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient } from '../src/client.js';
import { BroadcastChannel as NodeBroadcastChannel } from 'node:worker_threads';
import { createFakeEventSource } from './helpers/fake-eventsource.js';
import { FakeLockManager } from './helpers/fake-locks.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('HeraldClient in a browser window', () => {
  it('reconnects at once on the `online` event instead of waiting for the backoff', () => {
    vi.useFakeTimers();
    const ES = createFakeEventSource();
    const c = new HeraldClient({ url: 'http://h', EventSource: ES, shareConnection: false, backoff: { initialDelay: 30_000, jitter: 0 } });
    ES.last!.open();
    ES.last!.fail();
    expect(ES.instances).toHaveLength(1);
    window.dispatchEvent(new Event('online'));
    expect(ES.instances).toHaveLength(2);
    c.close();
    window.dispatchEvent(new Event('online'));
    expect(ES.instances).toHaveLength(2);
  });

  it('reads with fetch by default, and falls back to the global EventSource where fetch cannot stream', () => {
    const ES = createFakeEventSource();
    const fetchMock = vi.fn(() => new Promise<Response>(() => {}));
    vi.stubGlobal('EventSource', ES);
    vi.stubGlobal('fetch', fetchMock);
    try {
      const a = new HeraldClient({ url: '', userId: 'u', shareConnection: false, token: 't' });
      expect(fetchMock).toHaveBeenCalledTimes(1);
      const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
      expect(url).toBe('/api/sse?userId=u&envelope=1');
      expect((init.headers as Record<string, string>).authorization).toBe('Bearer t');
      expect(ES.instances).toHaveLength(0);
      a.close();
      // No streaming fetch (no ReadableStream): the native EventSource, token in the query.
      vi.stubGlobal('ReadableStream', undefined);
      const b = new HeraldClient({ url: '', userId: 'u', shareConnection: false, token: 't' });
      expect(ES.instances).toHaveLength(1);
      expect(ES.last!.url).toBe('/api/sse?userId=u&token=t&envelope=1');
      b.close();
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('uses the global EventSource when none is injected', () => {
    const ES = createFakeEventSource();
    vi.stubGlobal('EventSource', ES);
    try {
      const c = new HeraldClient({ url: '', userId: 'u', shareConnection: false, sseReader: 'eventsource' });
      expect(ES.instances).toHaveLength(1);
      expect(ES.last!.url).toBe('/api/sse?userId=u&envelope=1');
      c.close();
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('shares by default when Web Locks and BroadcastChannel exist, and falls back otherwise', async () => {
    const ES = createFakeEventSource();
    const fakeLocks = new FakeLockManager().forTab('t');
    vi.stubGlobal('navigator', { userAgent: 'test', locks: fakeLocks });
    if (typeof globalThis.BroadcastChannel !== 'function') vi.stubGlobal('BroadcastChannel', NodeBroadcastChannel);
    try {
      const shared = new HeraldClient({ url: 'http://h', EventSource: ES });
      expect(shared.shareKey).toMatch(/^herald:/);
      await vi.waitFor(() => expect(shared.role).toBe('leader'));
      expect(ES.instances).toHaveLength(1);
      shared.close();
      vi.stubGlobal('navigator', { userAgent: 'test' }); // no Web Locks
      const unshared = new HeraldClient({ url: 'http://h', EventSource: ES });
      expect(unshared.role).toBe('none');
      expect(ES.instances).toHaveLength(2);
      unshared.close();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
