/** `autoConnect`, and no connection from server-rendering code (Next.js sets NEXT_RUNTIME). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient, isServerRendering } from '../src/client.js';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

function fetchMock() {
  const f = vi.fn(() => new Promise<Response>(() => {}));
  vi.stubGlobal('fetch', f);
  return f;
}

describe('autoConnect', () => {
  it('connects at construction by default in Node', () => {
    const f = fetchMock();
    const c = new HeraldClient({ url: 'http://h', shareConnection: false });
    expect(f).toHaveBeenCalledTimes(1);
    expect(c.connectStarted).toBe(true);
    c.close();
  });

  it('autoConnect: false waits for connect(); reconnect() also starts it; connect() twice is one connection', () => {
    const f = fetchMock();
    const c = new HeraldClient({ url: 'http://h', shareConnection: false, autoConnect: false });
    expect(f).not.toHaveBeenCalled();
    expect(c.status).toBe('connecting');
    c.connect();
    c.connect();
    expect(f).toHaveBeenCalledTimes(1);
    c.close();
    c.connect(); // closed: no-op
    expect(f).toHaveBeenCalledTimes(1);
    const d = new HeraldClient({ url: 'http://h', shareConnection: false, autoConnect: false });
    d.reconnect();
    expect(f).toHaveBeenCalledTimes(2);
    d.close();
  });

  it('in Next.js server code (NEXT_RUNTIME, no window) nothing connects unless asked', () => {
    vi.stubEnv('NEXT_RUNTIME', 'nodejs');
    expect(isServerRendering()).toBe(true);
    const f = fetchMock();
    const c = new HeraldClient({ url: 'http://h', shareConnection: false });
    c.on('notification', () => {});
    expect(f).not.toHaveBeenCalled();
    c.close();
    const d = new HeraldClient({ url: 'http://h', shareConnection: false, autoConnect: true });
    expect(f).toHaveBeenCalledTimes(1);
    d.close();
  });

  it('importing the package opens nothing', async () => {
    const f = fetchMock();
    await import('../src/index.js');
    await import('../src/react.js');
    await import('../src/publisher.js');
    expect(f).not.toHaveBeenCalled();
  });
});
