/**
 * The fetch reader (the client's default SSE reader in browsers) in Chromium against the real
 * hub, from a page on another origin: it sends the token as `Authorization: Bearer` (never in
 * the URL), asks for `envelope=1` so `on('*')` sees events of any name, stops on a 401 with a
 * typed error instead of retrying forever, and waits for `Retry-After` after a 429.
 */
import { createHmac } from 'node:crypto';
import type { Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeraldPublisher } from '../dist/publisher.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, userConnections, waitUntil, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

const SECRET = 'e2e-fetch-stream-secret-0123456789abcdef';

let pages: StaticServer;
let hub: HeraldProcess;
let browser: Browser;
let publisher: HeraldPublisher;

function hs256(claims: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

beforeAll(async () => {
  pages = await serveStatic(inject('pagesDir'));
  hub = await startHerald({
    args: ['--cors-origins', pages.url, '--jwt-secret', SECRET, '--publisher-key', 'pub-key-0123456789', '--max-connections-per-user', '1'],
  });
  publisher = new HeraldPublisher({ url: hub.url, key: 'pub-key-0123456789', timeoutMs: 5_000, retries: 0 });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
  await pages?.close();
});

interface PageState {
  events: { event: string; id: string | undefined; data: unknown }[];
  status: string;
  connectionId: string | undefined;
  closeReason: string | undefined;
  errors: { name: string; kind: string; status: number | undefined; code: string | undefined; message: string }[];
}

const state = (page: Page) => page.evaluate(() => (window as unknown as { __herald: PageState }).__herald);

/** Opens the client page and records every subscribe request it makes. */
async function openClient(params: Record<string, string>): Promise<{ page: Page; requests: Request[] }> {
  const page = await browser.newPage();
  const requests: Request[] = [];
  page.on('request', (r) => {
    if (r.url().startsWith(`${hub.url}/api/sse?`) && r.method() === 'GET') requests.push(r);
  });
  const q = new URLSearchParams({ hub: hub.url, share: '0', star: '1', ...params });
  await page.goto(`${pages.url}/client.html?${q}`);
  return { page, requests };
}

describe('the fetch reader in Chromium', () => {
  it('sends the token as Authorization, asks for envelope=1, and gets events of any name', async () => {
    const token = hs256({ sub: 'fiona', exp: Math.floor(Date.now() / 1000) + 600 });
    const { page, requests } = await openClient({ token });
    await page.locator('body[data-status="open"]').waitFor();
    const req = requests[0]!;
    expect(req.resourceType()).toBe('fetch');
    const url = new URL(req.url());
    expect(url.searchParams.get('token')).toBeNull();
    expect(url.searchParams.get('envelope')).toBe('1');
    expect((await req.allHeaders())['authorization']).toBe(`Bearer ${token}`);
    expect(await userConnections(hub, 'fiona', 'pub-key-0123456789')).toHaveLength(1);

    const a = await publisher.sendToUser('fiona', 'order_update', { orderId: '123' });
    const b = await publisher.sendPaymentNotification('p-1', 'completed', { amount: 5 }, 'user', 'fiona');
    const c = await publisher.publish({ event: 'note', text: 'two\nlines', users: ['fiona'] });
    await waitUntil('three events', async () => ((await state(page)).events.length >= 3 ? true : undefined));
    expect((await state(page)).events).toEqual([
      { event: 'order_update', id: a.id, data: { orderId: '123' } },
      { event: 'payment', id: b.id, data: { paymentId: 'p-1', status: 'completed', amount: 5 } },
      { event: 'note', id: c.id, data: 'two\nlines' },
    ]);
    await page.close();
    await waitUntil('fiona gone', async () => (await userConnections(hub, 'fiona', 'pub-key-0123456789')).length === 0);
  });

  it('stops on 401 with a HeraldAuthError carrying the hub code, after one request', async () => {
    const { page, requests } = await openClient({ token: 'not-a-jwt', backoff: JSON.stringify({ initialDelay: 50, jitter: 0 }) });
    await page.locator('body[data-status="closed"]').waitFor();
    const s = await state(page);
    expect(s.closeReason).toBe('http_401');
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]).toMatchObject({ name: 'HeraldAuthError', kind: 'http', status: 401 });
    expect(s.errors[0]!.code).toBeTruthy();
    expect(requests).toHaveLength(1);
    await page.close();
  });

  it('waits for Retry-After after a 429, then connects', async () => {
    const token = hs256({ sub: 'gus', exp: Math.floor(Date.now() / 1000) + 600 });
    const first = await openClient({ token });
    await first.page.locator('body[data-status="open"]').waitFor();
    // The hub allows one connection per user: the second tab gets 429 user_connection_limit.
    const second = await openClient({ token, backoff: JSON.stringify({ initialDelay: 50, jitter: 0 }) });
    await waitUntil('the 429', async () => ((await state(second.page)).errors.length ? true : undefined));
    const err = (await state(second.page)).errors[0]!;
    expect(err).toMatchObject({ name: 'HeraldConnectionError', status: 429, code: 'user_connection_limit' });
    const refusedAt = Date.now();
    await first.page.close();
    await second.page.locator('body[data-status="open"]').waitFor({ timeout: 20_000 });
    // With a 50 ms backoff it would have retried at once; Retry-After (5 s) held it back.
    const times = second.requests.map((r) => r.timing().startTime);
    expect(second.requests.length).toBeGreaterThanOrEqual(2);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(4_500);
    expect(Date.now() - refusedAt).toBeLessThan(15_000);
    await second.page.close();
    expect(browser.errors).toEqual([]);
  });
});
