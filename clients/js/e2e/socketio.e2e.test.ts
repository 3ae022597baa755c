/**
 * Herald's Socket.IO endpoint in Chromium, with the browser build of npm socket.io-client, from a
 * page on another origin: on a WebSocket from the start (Herald's own WebSocket path) and on long
 * polling with the upgrade (socketioxide's path), events by user in order with their ids and
 * nobody else's; on the WebSocket path a hub-ended connection is a transport close, after which
 * the client reconnects by itself and resumes from `auth.lastEventId` (a trailing marker shows
 * nothing is lost or repeated); and a page on an origin the hub does not list gets
 * `connect_error: origin_not_allowed` (cross-site WebSocket hijacking).
 */
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeraldPublisher } from '../dist/publisher.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, stopAll, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

interface PageState {
  events: { event: string; id: string | undefined; data: any }[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  connects: number;
  disconnects: string[];
  errors: string[];
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

async function hub(args: string[] = ['--cors-origins', pages.url]): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

async function openPage(h: HeraldProcess, userId: string, transports: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${pages.url}/socketio.html?${new URLSearchParams({ hub: h.url, userId, transports })}`);
  return page;
}

const state = (page: Page) => page.evaluate(() => (window as any).__sio as PageState);
const ticks = (s: PageState) => s.events.filter((e) => e.event === 'tick');

describe('socket.io-client in Chromium against the real hub', () => {
  for (const transports of ['websocket', 'polling,websocket'] as const) {
    it(`${transports}: a user's events in order with their ids, nobody else's`, async () => {
      const h = await hub();
      const publisher = new HeraldPublisher({ url: h.url, timeoutMs: 5_000, retries: 0 });
      const page = await openPage(h, 'wendy', transports);
      const other = await openPage(h, 'oscar', transports);
      for (const p of [page, other]) await p.waitForFunction(() => (window as any).__sio.connects === 1);
      const ids: string[] = [];
      for (let n = 1; n <= 5; n++) ids.push((await publisher.publish({ event: 'tick', data: { n }, users: ['wendy'] })).id);
      const text = await publisher.publish({ event: 'tick', text: 'plain\ntext', users: ['wendy'] });
      await page.waitForFunction(() => (window as any).__sio.events.filter((e: any) => e.event === 'tick').length >= 6);
      const s = await state(page);
      expect(ticks(s).map((e) => e.data)).toEqual([1, 2, 3, 4, 5].map((n) => ({ n })).concat(['plain\ntext'] as never[]));
      expect(ticks(s).map((e) => e.id)).toEqual([...ids, text.id]);
      if (transports === 'websocket') expect(s.transport).toBe('websocket');
      expect(s.errors).toEqual([]);
      expect(ticks(await state(other))).toEqual([]);
      await page.close();
      await other.close();
    });
  }

  it('websocket: a hub-ended connection is a transport close; the client reconnects and resumes, nothing lost or repeated', async () => {
    const h = await hub();
    const publisher = new HeraldPublisher({ url: h.url, timeoutMs: 5_000, retries: 0 });
    const page = await openPage(h, 'wendy', 'websocket');
    await page.waitForFunction(() => (window as any).__sio.connects === 1);
    let n = 0;
    const publishNext = () => publisher.publish({ event: 'tick', data: ++n, users: ['wendy'] });
    for (let i = 0; i < 5; i++) await publishNext();
    for (let cut = 1; cut <= 2; cut++) {
      // Cut in the middle of a burst: some ticks arrive before the cut, the rest by replay.
      const [kicked] = await Promise.all([
        publisher.disconnect({ users: ['wendy'] }),
        (async () => {
          for (let i = 0; i < 10; i++) await publishNext();
        })(),
      ]);
      expect(kicked.disconnected).toBe(1);
      await page.waitForFunction((c) => (window as any).__sio.connects > c, cut);
    }
    for (let i = 0; i < 3; i++) await publishNext();
    await publisher.publish({ event: 'end', data: null, users: ['wendy'] });
    await page.waitForFunction(() => (window as any).__sio.events.some((e: any) => e.event === 'end'), undefined, {
      timeout: 20_000,
    });
    const s = await state(page);
    expect(ticks(s).map((e) => e.data)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(s.disconnects).toEqual(['transport close', 'transport close']);
    expect(s.events.filter((e) => e.event === 'disconnected').map((e) => e.data.reason)).toEqual([
      'server_disconnect',
      'server_disconnect',
    ]);
    expect(s.events.filter((e) => e.event === 'reset')).toEqual([]);
    await page.close();
  });

  it('a page on an origin the hub does not list gets connect_error origin_not_allowed', async () => {
    const h = await hub([]);
    const page = await openPage(h, 'mallory', 'websocket');
    await page.waitForFunction(() => (window as any).__sio.errors.length > 0);
    const s = await state(page);
    expect(s.errors[0]).toMatch(/^origin_not_allowed: /);
    expect(s.connects).toBe(0);
    await page.close();
  });
});
