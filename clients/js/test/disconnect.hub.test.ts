/**
 * The `disconnected` event's `reconnect` advice, end to end: the real herald binary (HERALD_BIN,
 * else target/debug/herald) sends it, and HeraldClient in Node (npm `eventsource`) follows it.
 * Each test is built so that it fails when the hub stops sending the field or the client stops
 * reading it: the backoff delay is far longer than the test's wait where the advice says `now`.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HeraldClient } from '../src/client.js';
import type { ClientState, DisconnectedData } from '../src/types.js';
import { postJson } from '../e2e/helpers/herald.js';
import { requireHeraldBin, startHerald, within, type HeraldProcess } from './helpers/hub.js';

const hubs: HeraldProcess[] = [];
const clients: HeraldClient[] = [];

beforeAll(() => requireHeraldBin());

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(hubs.splice(0).map((h) => h.stop('SIGKILL', 5_000)));
});

async function hub(args: string[]): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

/** A client that records the `connected` and `disconnected` events and its states. */
function client(options: ConstructorParameters<typeof HeraldClient>[0]) {
  const c = new HeraldClient({ shareConnection: false, livenessTimeout: 0, ...options });
  clients.push(c);
  const connected: unknown[] = [];
  const disconnected: DisconnectedData[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  c.on('connected', (d) => (connected.push(d), notify()));
  c.on('disconnected', (d) => (disconnected.push(d), notify()));
  c.onStatusChange(() => notify());
  const until = (what: string, check: () => boolean, ms = 10_000) =>
    within(
      ms,
      `${what} (connected ${connected.length}, disconnected ${JSON.stringify(disconnected)}, status ${c.status})`,
      new Promise<void>((resolve) => {
        const w = () => {
          if (check()) {
            waiters.delete(w);
            resolve();
          }
        };
        waiters.add(w);
        w();
      }),
    );
  return { c, connected, disconnected, until };
}

function hs256(secret: string, claims: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

describe('disconnected.reconnect against the real hub', () => {
  it('timeout says "now": the client comes back at once, not after its 60 s backoff', async () => {
    const h = await hub(['--connection-timeout', '1s', '--cleanup-interval', '100ms']);
    const { connected, disconnected, until } = client({
      url: h.url,
      userId: 'alice',
      backoff: { initialDelay: 60_000, jitter: 0 },
    });
    await until('the first connection', () => connected.length >= 1);
    await until('the timeout', () => disconnected.length >= 1);
    expect(disconnected[0]).toMatchObject({ reason: 'timeout', reconnect: 'now' });
    // Without the advice (or a client ignoring it) the next connection would wait 60 s.
    await until('the connection after the timeout', () => connected.length >= 2, 5_000);
  }, 20_000);

  it('server_disconnect says "backoff": the client comes back after its delay', async () => {
    const h = await hub([]);
    const { c, connected, disconnected, until } = client({
      url: h.url,
      userId: 'bob',
      backoff: { initialDelay: 300, jitter: 0 },
    });
    await until('the first connection', () => connected.length >= 1);
    const kicked = Date.now();
    expect((await postJson(`${h.url}/api/sse/disconnect`, { users: ['bob'] })).body).toEqual({ disconnected: 1 });
    await until('the disconnect', () => disconnected.length >= 1);
    expect(disconnected[0]).toMatchObject({ reason: 'server_disconnect', reconnect: 'backoff' });
    expect(c.status).toBe('reconnecting');
    await until('the connection after the backoff', () => connected.length >= 2);
    expect(Date.now() - kicked).toBeGreaterThanOrEqual(250);
  }, 20_000);

  it('token_expired says "new_token": with a static token the client stops for good', async () => {
    const secret = 'disconnect-test-secret-0123456789abcdef';
    const h = await hub(['--jwt-secret', secret]);
    const token = hs256(secret, { sub: 'carol', exp: Math.floor(Date.now() / 1000) + 2 });
    const { c, connected, disconnected, until } = client({ url: h.url, token, backoff: { initialDelay: 100, jitter: 0 } });
    let last: Partial<ClientState> = {};
    c.onStateChange((s) => (last = s));
    await until('the first connection', () => connected.length >= 1);
    await until('the token to expire', () => c.status === 'closed', 10_000);
    expect(disconnected[0]).toMatchObject({ reason: 'token_expired', reconnect: 'new_token' });
    expect(last).toMatchObject({ closeReason: 'token_expired' });
    expect(c.state.error).toMatchObject({ kind: 'token' });
    expect(connected).toHaveLength(1);
  }, 20_000);
});
