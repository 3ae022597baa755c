/**
 * HeraldPublisher's errors and retries against the real hub: the herald binary (HERALD_BIN, else
 * target/debug/herald), a real redis-server for engine faults, real SSE subscribers (npm
 * `eventsource`) counting what arrives, with a trailing marker event after every retry so that
 * a duplicate cannot hide behind a late arrival.
 *
 * The tests in the block "idempotency keys (issue 10 item 6, hub side)" need the hub to accept
 * `Idempotency-Key` / `idempotencyKey` and answer `503 outcome_unknown` (they fail against a hub
 * without it: a retried timeout is delivered twice). They run whenever the binary has the
 * `--idempotency-window` setting (or with HERALD_TEST_IDEMPOTENCY=1), and are reported as skipped,
 * with a warning, against a binary that predates it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HeraldError, HeraldPublisher, OutcomeUnknownError, isPublishItemError } from '../src/publisher.js';
import {
  recorder,
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
import { heraldBin } from '../e2e/paths.js';

/** Whether the binary implements idempotency keys (issue 10 item 6): it has `--idempotency-window`. */
const HUB_HAS_IDEMPOTENCY =
  process.env.HERALD_TEST_IDEMPOTENCY === '1' ||
  (existsSync(heraldBin()) &&
    spawnSync(heraldBin(), ['serve', '--help'], { encoding: 'utf8', timeout: 10_000 }).stdout?.includes('--idempotency-window'));
if (!HUB_HAS_IDEMPOTENCY) {
  console.warn(
    `publisher.hub.test.ts: ${heraldBin()} has no --idempotency-window: skipping the idempotency-key tests (issue 10 item 6).`,
  );
}

const KEY = 'publisher-key-0123456789';
const fast = { initialDelay: 20, maxDelay: 100, jitter: 0 };

const hubs: HeraldProcess[] = [];
const redises: Redis[] = [];
const subs: Subscriber[] = [];
const dirs: string[] = [];

beforeAll(() => requireHeraldBin());

afterEach(async () => {
  for (const s of subs.splice(0)) s.close();
  for (const r of redises) r.resume();
  await Promise.all(hubs.splice(0).map((h) => h.stop('SIGKILL', 5_000)));
  await Promise.all(redises.splice(0).map((r) => r.kill()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function hub(args: string[] = []): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

async function sub(h: HeraldProcess, channel: string): Promise<Subscriber> {
  const s = await subscribe(h.url, `channels=${channel}`);
  subs.push(s);
  return s;
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

/**
 * Publishes a marker on `channel` (fresh publisher, no retries) and waits for it: every event
 * published before it has arrived by then, so counts taken afterwards are final.
 */
async function marker(h: HeraldProcess, s: Subscriber, channel: string, key?: string): Promise<void> {
  const p = new HeraldPublisher({ url: h.url, key, retries: 10, retryBackoff: fast, timeoutMs: 5_000 });
  await p.publish({ event: 'end', data: { channel }, channels: [channel] });
  await s.waitFor('the marker', (e) => e.event === 'end');
}

function ticks(s: Subscriber, n: number): number {
  return s.named('tick').filter((e) => (e.data as { n?: number }).n === n).length;
}

describe('HeraldPublisher against the real hub: errors', () => {
  it('400 invalid_field and missing_target carry the hub code and message, and are not retried', async () => {
    const h = await hub();
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 3, retryBackoff: fast, fetch: rec.fetch });
    const bad = await rejection(p.publish({ event: 'bad name', data: 1, broadcast: true }));
    expect(bad).toMatchObject({ status: 400, code: 'invalid_field', attempts: 1 });
    expect(bad.message).toMatch(/event/);
    expect(bad).not.toBeInstanceOf(OutcomeUnknownError);
    const none = await rejection(p.publish({ event: 'tick', data: 1 }));
    expect(none).toMatchObject({ status: 400, code: 'missing_target', attempts: 1 });
    expect(none.message.length).toBeGreaterThan(0);
    expect(rec.attempts.map((a) => a.status)).toEqual([400, 400]);
  });

  it('401 unauthorized for a missing or wrong key, not retried', async () => {
    const h = await hub(['--publisher-key', KEY]);
    const rec = recorder();
    const wrong = new HeraldPublisher({ url: h.url, key: 'not-the-key-0123456789', retries: 3, retryBackoff: fast, fetch: rec.fetch });
    const e1 = await rejection(wrong.broadcastMessage('tick', 1));
    expect(e1).toMatchObject({ status: 401, code: 'unauthorized', attempts: 1 });
    expect(e1.message).toMatch(/not valid/);
    const e2 = await rejection(new HeraldPublisher({ url: h.url, retries: 3, fetch: rec.fetch }).getStats());
    expect(e2).toMatchObject({ status: 401, code: 'unauthorized', attempts: 1 });
    expect(e2.message).toMatch(/publisher key/);
    expect(rec.attempts).toHaveLength(2);
  });

  it('403 forbidden outside a scoped key, on publish and on admin calls, not retried', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'herald-ts-'));
    dirs.push(dir);
    const config = join(dir, 'herald.toml');
    await writeFile(
      config,
      `[[publisher_keys]]\nname = "news"\nkey = "${KEY}"\nchannels = ["news"]\nadmin = false\n`,
    );
    const h = await hub(['--config', config]);
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, key: KEY, retries: 3, retryBackoff: fast, fetch: rec.fetch });
    const s = await sub(h, 'news');
    expect((await p.sendToChannel('news', 'tick', { n: 1 })).delivered).toBe(1);
    const e1 = await rejection(p.sendToChannel('other', 'tick', { n: 2 }));
    expect(e1).toMatchObject({ status: 403, code: 'forbidden', attempts: 1 });
    expect(e1.message.length).toBeGreaterThan(0);
    const e2 = await rejection(p.disconnectAll());
    expect(e2).toMatchObject({ status: 403, code: 'forbidden', attempts: 1 });
    expect(e2.message).toMatch(/admin/);
    await marker(h, s, 'news', KEY);
    expect(ticks(s, 1)).toBe(1);
    expect(rec.attempts.map((a) => a.status)).toEqual([200, 403, 403]);
  });

  it('413 payload_too_large is not retried', async () => {
    const h = await hub(['--max-body-size', '1KiB']);
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 3, retryBackoff: fast, fetch: rec.fetch });
    const e = await rejection(p.broadcastMessage('tick', 'x'.repeat(4096)));
    expect(e).toMatchObject({ status: 413, code: 'payload_too_large', attempts: 1 });
    expect(rec.attempts).toHaveLength(1);
  });
});

describe('HeraldPublisher against the real hub: retries where nothing was sent', () => {
  it('429 rate_limited: waits Retry-After, retries, delivers once (with and without keys)', async () => {
    const h = await hub(['--publish-rate-per-key', '1/s:1']);
    const s = await sub(h, 'rl');
    for (const idempotencyKeys of [false, true]) {
      const n = idempotencyKeys ? 2 : 1;
      // Use up the bucket, then publish: the first attempt is refused with 429.
      await waitUntil('a publish to pass the rate limit', async () => {
        try {
          await new HeraldPublisher({ url: h.url, retries: 0 }).publish({ event: 'filler', data: 0, channels: ['none'] });
          return true;
        } catch {
          return false;
        }
      });
      const rec = recorder();
      const p = new HeraldPublisher({ url: h.url, retries: 3, retryBackoff: fast, fetch: rec.fetch, idempotencyKeys });
      const started = Date.now();
      const r = await p.sendToChannel('rl', 'tick', { n });
      expect(r.delivered).toBe(1);
      expect(rec.attempts[0]).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(Number(rec.attempts[0]!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(rec.attempts.at(-1)!.status).toBe(200);
      // With keys on, every attempt carried the same key.
      const keys = rec.sent.map((hd) => hd['idempotency-key']);
      if (idempotencyKeys) expect(new Set(keys).size).toBe(1);
      else expect(keys.every((k) => k === undefined)).toBe(true);
      await waitUntil('the bucket to refill', async () => {
        try {
          await new HeraldPublisher({ url: h.url, retries: 0 }).publish({ event: 'end', data: n, channels: ['rl'] });
          return true;
        } catch {
          return false;
        }
      });
      await s.waitFor(`marker ${n}`, (e) => e.event === 'end' && e.data === n);
      expect(ticks(s, n)).toBe(1);
    }
  }, 30_000);

  it('429 with a Retry-After longer than maxRetryAfterMs fails at once', async () => {
    const h = await hub(['--publish-rate-per-key', '1/s:1']);
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 3, retryBackoff: fast, fetch: rec.fetch, maxRetryAfterMs: 200 });
    let last: HeraldError | undefined;
    for (let i = 0; i < 5 && !last; i++) {
      try {
        await p.broadcastMessage('tick', i);
      } catch (e) {
        last = e as HeraldError;
      }
    }
    expect(last).toMatchObject({ status: 429, code: 'rate_limited', attempts: 1 });
    expect(last!.retryAfterMs).toBeGreaterThanOrEqual(1000);
    expect(last!.message).toMatch(/slow down/);
    expect(last).not.toBeInstanceOf(OutcomeUnknownError);
  });

  it('503 engine_unavailable while Redis is down: retried without a key until Redis is back, delivered once', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const h = await hub(['--engine', redis.url]);
    const s = await sub(h, 'eng');
    await redis.kill();
    const rec = recorder();
    // Keys off: only "nothing was sent" failures may be retried.
    const p = new HeraldPublisher({ url: h.url, retries: 0, fetch: rec.fetch, idempotencyKeys: false });
    const once = await rejection(p.sendToChannel('eng', 'tick', { n: 0 }));
    expect(once).toMatchObject({ status: 503, code: 'engine_unavailable', retryAfterMs: 1000, attempts: 1 });
    expect(once.message).toMatch(/nothing was sent/);
    expect(once).not.toBeInstanceOf(OutcomeUnknownError);

    const rec2 = recorder();
    const retrying = new HeraldPublisher({ url: h.url, retries: 8, retryBackoff: fast, fetch: rec2.fetch, idempotencyKeys: false });
    const publishing = retrying.sendToChannel('eng', 'tick', { n: 1 });
    await rec2.finished(1);
    expect(rec2.attempts[0]).toMatchObject({ status: 503, code: 'engine_unavailable' });
    const back = await startRedis(redis.port);
    redises.push(back);
    const r = await within(20_000, 'the retried publish', publishing);
    expect(r.delivered).toBe(1);
    expect(rec2.attempts.length).toBeGreaterThanOrEqual(2);
    expect(rec2.attempts.at(-1)!.status).toBe(200);
    await marker(h, s, 'eng');
    expect(ticks(s, 0)).toBe(0);
    expect(ticks(s, 1)).toBe(1);
  }, 40_000);

  it('batch items refused with engine_unavailable are resent, only those, once Redis is back; each lands once', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const h = await hub(['--engine', redis.url]);
    const s = await sub(h, 'beng');
    await redis.kill();
    const rec = recorder();
    // Keys off (the hub of today refuses unknown item fields): only "nothing was sent" items are resent.
    const p = new HeraldPublisher({ url: h.url, retries: 8, retryBackoff: { initialDelay: 200, maxDelay: 500, jitter: 0 }, fetch: rec.fetch, idempotencyKeys: false });
    const publishing = p.publishMany([
      { event: 'tick', data: { n: 1 }, channels: ['beng'] },
      { event: 'bad name', data: { n: 9 }, channels: ['beng'] },
      { event: 'tick', data: { n: 2 }, channels: ['beng'] },
    ]);
    await rec.finished(1);
    const firstItems = (rec.attempts[0]!.body as { results: { error?: { code: string } }[] }).results.map((r) => r.error?.code);
    expect(firstItems).toEqual(['engine_unavailable', 'invalid_field', 'engine_unavailable']);
    const back = await startRedis(redis.port);
    redises.push(back);
    const { results } = await within(20_000, 'the batch', publishing);
    expect(isPublishItemError(results[0]!)).toBe(false);
    expect(isPublishItemError(results[1]!) && results[1].error.code).toBe('invalid_field');
    expect(isPublishItemError(results[2]!)).toBe(false);
    // Resends carried only the two refused items.
    for (const body of rec.sentBodies.slice(1)) {
      expect((body as { data: { n: number } }[]).map((b) => b.data.n)).toEqual([1, 2]);
    }
    await marker(h, s, 'beng');
    expect([ticks(s, 1), ticks(s, 2), ticks(s, 9)]).toEqual([1, 1, 0]);
  }, 40_000);

  it('503 shutting_down: nothing was sent, retried without a key, and the retry finds the hub gone', async () => {
    for (const retries of [0, 1]) {
      const h = await hub();
      const s = await sub(h, 'bye');
      // Hold the body back until the hub has begun shutting down: the request head is in, the
      // handler waits for its body, then publishes into a closing hub.
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      let headSent!: () => void;
      const onWire = new Promise<void>((r) => (headSent = r));
      const rec = recorder((init) => {
        const bytes = new TextEncoder().encode(String(init.body));
        let sentHead = false;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            // All but the last byte at once (so that the head and a chunk are on the wire), the
            // last byte once the gate opens.
            if (!sentHead) {
              sentHead = true;
              c.enqueue(bytes.slice(0, -1));
              return;
            }
            headSent(); // fetch took the first chunk: head and chunk are written
            await gate;
            c.enqueue(bytes.slice(-1));
            c.close();
          },
        });
        return { ...init, body, duplex: 'half' } as RequestInit;
      });
      const p = new HeraldPublisher({ url: h.url, retries, retryBackoff: fast, fetch: rec.fetch, idempotencyKeys: false });
      const publishing = rejection(p.sendToChannel('bye', 'tick', { n: 1 }));
      await rec.started(1);
      await within(5_000, 'the request head on the wire', onWire);
      // The hub must have parsed the head before SIGTERM (it stops accepting at once, and
      // closes connections without a request): nothing observable tells when, so a short pause.
      await new Promise((r) => setTimeout(r, 200));
      h.proc.kill('SIGTERM');
      await s.waitFor('disconnected (server_shutdown)', (e) => e.event === 'disconnected');
      open();
      const err = await within(15_000, 'the publish to fail', publishing);
      expect(rec.attempts[0]).toMatchObject({ status: 503, code: 'shutting_down' });
      if (retries === 0) {
        expect(err).toMatchObject({ status: 503, code: 'shutting_down', retryAfterMs: 5000, attempts: 1 });
        expect(err).not.toBeInstanceOf(OutcomeUnknownError);
      } else {
        // Retried (after Retry-After: 5 s) although it had no key: nothing had been sent. The
        // retry's connection is refused: nothing sent either, so still a plain HeraldError.
        expect(err).toMatchObject({ status: 0, code: 'network_error', attempts: 2 });
        expect(err).not.toBeInstanceOf(OutcomeUnknownError);
      }
      expect(ticks(s, 1)).toBe(0);
      await within(15_000, 'the hub to exit', h.stop('SIGTERM', 10_000));
    }
  }, 60_000);

  it('a refused connection is retried without a key; a timeout is not (OutcomeUnknownError)', async () => {
    const h = await hub();
    const s = await sub(h, 'to');
    // Pause the hub: the request is accepted by the kernel but not answered in time.
    h.proc.kill('SIGSTOP');
    try {
      const rec = recorder();
      const p = new HeraldPublisher({ url: h.url, retries: 3, retryBackoff: fast, timeoutMs: 300, fetch: rec.fetch, idempotencyKeys: false });
      const err = await rejection(p.sendToChannel('to', 'tick', { n: 1 }));
      expect(err).toBeInstanceOf(OutcomeUnknownError);
      expect(err).toMatchObject({ status: 0, code: 'timeout', attempts: 1, idempotencyKey: undefined });
      expect(rec.sent).toHaveLength(1);
    } finally {
      h.proc.kill('SIGCONT');
    }
    // The hub still handles the timed-out request: at most once, never twice.
    await marker(h, s, 'to');
    expect(ticks(s, 1)).toBeLessThanOrEqual(1);

    const port = h.port;
    await h.stop('SIGTERM', 10_000);
    const rec = recorder();
    const p = new HeraldPublisher({ url: `http://127.0.0.1:${port}`, retries: 2, retryBackoff: fast, fetch: rec.fetch, idempotencyKeys: false });
    const refused = await rejection(p.broadcastMessage('tick', 1));
    expect(refused).toMatchObject({ status: 0, code: 'network_error', attempts: 3 });
    expect(refused).not.toBeInstanceOf(OutcomeUnknownError);
    expect(rec.attempts.map((a) => a.code)).toEqual(['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
  }, 30_000);

  it('admin calls are retried after a timeout (disconnect is idempotent)', async () => {
    const h = await hub();
    const s = await sub(h, 'adm');
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 5, retryBackoff: fast, timeoutMs: 300, fetch: rec.fetch });
    h.proc.kill('SIGSTOP');
    let resumed = false;
    try {
      const done = p.disconnectAll();
      await rec.finished(1);
      expect(rec.attempts[0]!.status).toBe(0);
      h.proc.kill('SIGCONT');
      resumed = true;
      const r = await within(10_000, 'disconnectAll', done);
      expect(r.disconnected).toBeGreaterThanOrEqual(0);
    } finally {
      if (!resumed) h.proc.kill('SIGCONT');
    }
    expect(rec.attempts.length).toBeGreaterThanOrEqual(2);
    await s.waitFor('disconnected', (e) => e.event === 'disconnected');
  }, 30_000);
});

describe.runIf(HUB_HAS_IDEMPOTENCY)('HeraldPublisher against the real hub: idempotency keys (issue 10 item 6, hub side)', () => {
  it('a repeated key publishes once and answers the first result with Idempotent-Replayed: true', async () => {
    const h = await hub();
    const s = await sub(h, 'idem');
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 0, fetch: rec.fetch });
    const first = await p.sendToChannel('idem', 'tick', { n: 1 }, { idempotencyKey: 'order-42:shipped' });
    expect(first.replayed).toBeUndefined();
    const again = await p.sendToChannel('idem', 'tick', { n: 1 }, { idempotencyKey: 'order-42:shipped' });
    expect(again).toEqual({ id: first.id, delivered: first.delivered, replayed: true });
    expect(rec.attempts[1]!.headers['idempotent-replayed']).toBe('true');
    expect(rec.attempts[0]!.headers['idempotent-replayed']).toBeUndefined();
    // The key in the body works the same, and the raw answer repeats status and body.
    const raw = await fetch(`${h.url}/api/sse/message`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event: 'tick', data: { n: 1 }, channels: ['idem'], idempotencyKey: 'order-42:shipped' }),
      signal: AbortSignal.timeout(5_000),
    });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('idempotent-replayed')).toBe('true');
    // Same body (the hub may also mark it `replayed: true` in the body).
    const rawBody = (await raw.json()) as Record<string, unknown>;
    expect({ id: rawBody.id, delivered: rawBody.delivered }).toEqual({ id: first.id, delivered: first.delivered });
    expect(rawBody.replayed ?? true).toBe(true);
    await marker(h, s, 'idem');
    expect(ticks(s, 1)).toBe(1);
  });

  it('a key reused with a different body answers 422 idempotency_key_reused, not retried', async () => {
    const h = await hub();
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 3, retryBackoff: fast, fetch: rec.fetch });
    await p.broadcastMessage('tick', { n: 1 }, { idempotencyKey: 'k-reused' });
    const e = await rejection(p.broadcastMessage('tick', { n: 2 }, { idempotencyKey: 'k-reused' }));
    expect(e).toMatchObject({ status: 422, code: 'idempotency_key_reused', attempts: 1, idempotencyKey: 'k-reused' });
    expect(e.message.length).toBeGreaterThan(0);
    expect(e).not.toBeInstanceOf(OutcomeUnknownError);
    expect(rec.attempts).toHaveLength(2);
  });

  it('an invalid key answers 400 invalid_field (header, and batch item)', async () => {
    const h = await hub();
    const p = new HeraldPublisher({ url: h.url, retries: 2, retryBackoff: fast });
    for (const key of ['has space', 'x'.repeat(129), 'tab\there', 'é']) {
      const e = await rejection(p.broadcastMessage('tick', 1, { idempotencyKey: key }));
      expect(e).toMatchObject({ status: 400, code: 'invalid_field', attempts: 1 });
    }
    // 128 printable characters are fine.
    await p.broadcastMessage('tick', 1, { idempotencyKey: '!~'.repeat(64) });
    const batch = await p.publishMany([
      { event: 'tick', data: 1, broadcast: true, idempotencyKey: 'has space' },
      { event: 'tick', data: 2, broadcast: true },
    ]);
    const [bad, good] = batch.results;
    expect(isPublishItemError(bad!) && bad.error.code).toBe('invalid_field');
    expect(isPublishItemError(good!)).toBe(false);
  });

  it('a keyed publish retried after a timeout is delivered once', async () => {
    const h = await hub();
    const s = await sub(h, 'retry');
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 5, retryBackoff: fast, timeoutMs: 400, fetch: rec.fetch });
    h.proc.kill('SIGSTOP');
    let r;
    try {
      const publishing = p.sendToChannel('retry', 'tick', { n: 1 });
      // The first attempt timed out and the retry is on its way: both reach the hub.
      await rec.started(2);
      h.proc.kill('SIGCONT');
      r = await within(15_000, 'the keyed publish', publishing);
    } finally {
      h.proc.kill('SIGCONT');
    }
    expect(r.delivered).toBe(1);
    expect(rec.attempts[0]).toMatchObject({ status: 0 });
    const keys = rec.sent.map((hd) => hd['idempotency-key']);
    expect(keys[0]).toMatch(/^[\x21-\x7e]{1,128}$/);
    expect(new Set(keys).size).toBe(1);
    await marker(h, s, 'retry');
    expect(ticks(s, 1)).toBe(1);
  }, 30_000);

  it('a batch retried with the same item keys publishes each item once', async () => {
    const h = await hub();
    const s = await sub(h, 'batch');
    const rec = recorder();
    const p = new HeraldPublisher({ url: h.url, retries: 0, fetch: rec.fetch });
    const bodies = [1, 2, 3].map((n) => ({ event: 'tick', data: { n }, channels: ['batch'] }));
    const first = await p.publishMany(bodies);
    expect(first.results.every((r) => !isPublishItemError(r))).toBe(true);
    const sent = rec.sentBodies[0] as { idempotencyKey?: string }[];
    expect(sent.map((b) => typeof b.idempotencyKey)).toEqual(['string', 'string', 'string']);
    expect(new Set(sent.map((b) => b.idempotencyKey)).size).toBe(3);
    // The same batch again (as a retry would send it): the first results, nothing published.
    const again = await p.publishMany(sent as typeof bodies);
    const idOf = (r: unknown) => ({ id: (r as { id?: string }).id, delivered: (r as { delivered?: number }).delivered });
    expect(again.results.map(idOf)).toEqual(first.results.map(idOf));
    for (const r of again.results) expect((r as { replayed?: boolean }).replayed ?? true).toBe(true);
    await marker(h, s, 'batch');
    for (const n of [1, 2, 3]) expect(ticks(s, n)).toBe(1);
  });

  it('Redis paused mid-publish: outcome_unknown; keyed publishes are retried with the same key and land once, unkeyed ones are not retried', async () => {
    const redis = await startRedis();
    redises.push(redis);
    const h = await hub(['--engine', redis.url]);
    const s = await sub(h, 'unk');
    // One publish first: the hub announces "listening" before its Redis session is open (it
    // is not ready until then), and a publish waits for the session. Once one has gone
    // through, the hub's publish writer is connected: it connects with every session, before
    // the hub reports ready, so each round's publish reaches the paused Redis (no retry of
    // `engine_unavailable` rounds is needed).
    await marker(h, s, 'unk');

    for (const keyed of [false, true]) {
      const n = keyed ? 2 : 1;
      const rec = recorder();
      const p = new HeraldPublisher({ url: h.url, retries: 10, retryBackoff: fast, fetch: rec.fetch, idempotencyKeys: keyed });
      redis.pause();
      let outcome: { ok: true } | { ok: false; err: HeraldError };
      try {
        const publishing = p.sendToChannel('unk', 'tick', { n }).then(
          () => ({ ok: true as const }),
          (err: HeraldError) => ({ ok: false as const, err }),
        );
        // The hub sent the script and gave up waiting: it cannot know whether it ran.
        await rec.finished(1, 20_000);
        expect(rec.attempts[0]).toMatchObject({ status: 503, code: 'outcome_unknown' });
        redis.resume();
        outcome = await within(20_000, 'the publish', publishing);
      } finally {
        redis.resume();
      }
      if (keyed) {
        expect(outcome.ok).toBe(true);
        expect(rec.attempts.length).toBeGreaterThanOrEqual(2);
        expect(new Set(rec.sent.map((hd) => hd['idempotency-key'])).size).toBe(1);
      } else {
        expect(outcome.ok).toBe(false);
        const err = (outcome as { err: HeraldError }).err;
        expect(err).toBeInstanceOf(OutcomeUnknownError);
        expect(err).toMatchObject({ status: 503, code: 'outcome_unknown', attempts: 1 });
        expect(rec.attempts).toHaveLength(1);
      }
      await marker(h, s, 'unk');
      // Keyed: exactly once. Unkeyed: the paused script may or may not have run, never twice.
      if (keyed) expect(ticks(s, n)).toBe(1);
      else expect(ticks(s, n)).toBeLessThanOrEqual(1);
      s.events.splice(0);
    }
  }, 90_000);
});
