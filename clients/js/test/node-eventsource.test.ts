/**
 * The client in Node against a tiny loopback SSE server, with the real
 * `eventsource` package loaded lazily (Node 20 has no global EventSource).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient } from '../src/client.js';
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

describe('HeraldClient in Node with the eventsource package', () => {
  it('has no global EventSource on this Node, and loads the package lazily', async () => {
    if (getGlobalEventSource()) return; // newer Node: nothing to prove
    const ctor = await loadEventSourcePackage();
    expect(typeof ctor).toBe('function');
  });

  it('receives events, reconnects with lastEventId and stops on token_expired', async () => {
    const queries: URLSearchParams[] = [];
    const url = await start((req, res, n) => {
      const q = new URL(req.url!, 'http://x').searchParams;
      queries.push(q);
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
    expect(queries[1]!.get('token')).toBe('static-token');
    client.close();
  });

  it('stops on HTTP 401 reported by the eventsource package', async () => {
    const url = await start((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'unauthorized', message: 'bad token' } }));
    });
    const client = new HeraldClient({ url, token: 't', shareConnection: false, backoff: { initialDelay: 20, jitter: 0 } });
    await vi.waitFor(() => expect(client.status).toBe('closed'), { timeout: 5000 });
    expect(client.state.closeReason).toBe('http_401');
    expect(client.state.error).toMatchObject({ kind: 'http', status: 401 });
  });
});
