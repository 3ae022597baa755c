/**
 * HeraldClient from dist/ in Chromium with `transport: "websocket"` (the browser's own
 * WebSocket, nothing injected) and `"auto"`, from a page on another origin listed in
 * `--cors-origins` (the hub's Origin check on the upgrade lets it through): events by user in
 * order with their ids, JSON and text payloads, resume after the hub cuts the socket in the
 * middle of a burst (nothing lost or repeated), and `auto` falling back to the WebSocket when the
 * SSE path does not answer.
 */
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeraldPublisher } from '../dist/publisher.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, stopAll, userConnections, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

interface PageState {
  events: { event: string; id: string | undefined; data: any }[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  connected: string[];
  disconnected: { reason: string }[];
  resets: unknown[];
  status: string;
  transport: string | undefined;
}

let pages: StaticServer;
let browser: Browser;
const hubs: HeraldProcess[] = [];

beforeAll(async () => {
  pages = await serveStatic(inject('pagesDir'));
  browser = await launchBrowser();
});

afterEach(async () => {
  await stopAll(...hubs.splice(0));
});

afterAll(async () => {
  await browser?.close();
  await pages?.close();
});

async function hub(): Promise<HeraldProcess> {
  const h = await startHerald({ args: ['--cors-origins', pages.url] });
  hubs.push(h);
  return h;
}

async function openClient(h: HeraldProcess, userId: string, extra: Record<string, string>): Promise<Page> {
  const page = await browser.newPage();
  const q = new URLSearchParams({
    hub: h.url,
    userId,
    share: '0',
    backoff: JSON.stringify({ initialDelay: 150, maxDelay: 1000 }),
    events: 'tick',
    ...extra,
  });
  await page.goto(`${pages.url}/client.html?${q}`);
  await page.waitForFunction(() => (window as any).__herald.status === 'open');
  return page;
}

const state = (page: Page) => page.evaluate(() => (window as any).__herald as PageState);

describe('HeraldClient over the browser WebSocket', () => {
  it('gets its user’s events in order with ids, JSON and text, and resumes after cuts with nothing lost or repeated', async () => {
    const h = await hub();
    const publisher = new HeraldPublisher({ url: h.url, timeoutMs: 5_000, retries: 0 });
    const page = await openClient(h, 'wendy', { transport: 'websocket' });
    const other = await openClient(h, 'oscar', { transport: 'websocket' });
    expect((await state(page)).transport).toBe('websocket');

    const ids: string[] = [];
    let n = 0;
    const publishNext = async () => ids.push((await publisher.sendToUser('wendy', 'tick', { n: ++n })).id);
    for (let i = 0; i < 5; i++) await publishNext();
    const text = await publisher.publish({ event: 'tick', text: 'plain\ntext', users: ['wendy'] });
    expect(text.delivered).toBe(1);
    await page.waitForFunction(() => (window as any).__herald.events.length >= 6);
    const first = await state(page);
    expect(first.events.map((e) => e.data)).toEqual([1, 2, 3, 4, 5].map((k) => ({ n: k })).concat(['plain\ntext'] as never[]));
    expect(first.events.map((e) => e.id)).toEqual([...ids, text.id]);

    for (let cut = 1; cut <= 2; cut++) {
      const [kicked] = await Promise.all([
        publisher.disconnect({ users: ['wendy'] }),
        (async () => {
          for (let i = 0; i < 10; i++) await publishNext();
        })(),
      ]);
      expect(kicked.disconnected).toBe(1);
      for (let i = 0; i < 5; i++) await publishNext();
      await page.waitForFunction(
        (c) => (window as any).__herald.connected.length > c && (window as any).__herald.status === 'open',
        cut,
      );
    }
    for (let i = 0; i < 3; i++) await publishNext();
    await page.waitForFunction((count) => (window as any).__herald.events.length >= count, n + 1, { timeout: 20_000 });
    const s = await state(page);
    const ticks = s.events.filter((e) => typeof e.data === 'object');
    expect(ticks.map((e) => e.data.n)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(ticks.map((e) => e.id)).toEqual(ids);
    expect(s.resets).toEqual([]);
    expect(s.disconnected.map((d) => d.reason)).toEqual(['server_disconnect', 'server_disconnect']);
    expect(s.transport).toBe('websocket');
    expect(await userConnections(h, 'wendy')).toEqual([s.connected[2]]);
    // None of it reached the other user.
    expect((await state(other)).events).toEqual([]);
    await page.close();
    await other.close();
  });

  it('auto prefers SSE, and falls back to the WebSocket when the SSE path does not answer', async () => {
    const h = await hub();
    const publisher = new HeraldPublisher({ url: h.url, timeoutMs: 5_000, retries: 0 });
    const sse = await openClient(h, 'amy', { transport: 'auto' });
    expect((await state(sse)).transport).toBe('sse');
    const ws = await openClient(h, 'amy', { transport: 'auto', path: '/api/no-sse-here' });
    expect((await state(ws)).transport).toBe('websocket');
    const r = await publisher.sendToUser('amy', 'tick', { n: 1 });
    expect(r.delivered).toBe(2);
    for (const page of [sse, ws]) {
      await page.waitForFunction(() => (window as any).__herald.events.length >= 1);
      expect((await state(page)).events).toEqual([{ event: 'tick', id: r.id, data: { n: 1 } }]);
      await page.close();
    }
  });
});
