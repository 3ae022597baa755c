/**
 * Tab sharing in a real browser: tabs of one origin with `shareConnection: true` hold ONE SSE
 * connection (Web Locks leader + BroadcastChannel), every tab gets every event, and when the
 * leader tab closes another tab takes over and resumes without losing an event.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeraldPublisher } from '../dist/publisher.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, stats, userConnections, waitUntil, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

let pages: StaticServer;
let hub: HeraldProcess;
let browser: Browser;
let publisher: HeraldPublisher;

beforeAll(async () => {
  pages = await serveStatic(inject('pagesDir'));
  hub = await startHerald({ args: ['--cors-origins', pages.url] });
  publisher = new HeraldPublisher({ url: hub.url, timeoutMs: 5_000, retries: 0 });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
  await pages?.close();
});

interface TabState {
  events: { id: string | undefined; data: { n: number } }[];
  status: string;
  role: string;
  connectionId: string | undefined;
}

const tabState = (page: Page) => page.evaluate(() => (window as any).__herald as TabState);
const ticks = async (page: Page) => (await tabState(page)).events.map((e) => e.data.n);

async function openTab(userId: string): Promise<Page> {
  const page = await browser.newPage();
  const q = new URLSearchParams({
    hub: hub.url,
    userId,
    share: '1',
    events: 'tick',
    backoff: JSON.stringify({ initialDelay: 100, maxDelay: 1000 }),
  });
  await page.goto(`${pages.url}/client.html?${q}`);
  await page.waitForFunction(() => (window as any).__herald.status === 'open');
  return page;
}

async function waitForTicks(page: Page, n: number): Promise<void> {
  await page.waitForFunction((count) => (window as any).__herald.events.length >= count, n, { timeout: 15_000 });
}

describe('tab sharing (shareConnection: true)', () => {
  it('holds one connection for several tabs, and a follower takes over when the leader tab closes', async () => {
    const ids: string[] = [];
    let n = 0;
    const publishNext = async () => {
      const r = await publisher.sendToUser('gina', 'tick', { n: ++n });
      ids.push(r.id);
      return r;
    };
    const upTo = (k: number) => Array.from({ length: k }, (_, i) => i + 1);

    const first = await openTab('gina');
    await first.waitForFunction(() => (window as any).__herald.role === 'leader');
    const second = await openTab('gina');
    const secondState = await tabState(second);
    expect(secondState.role).toBe('follower');
    // The follower mirrors the leader's connection.
    const leaderConn = (await tabState(first)).connectionId!;
    expect(leaderConn).toMatch(/^[0-9a-f]{32}$/);
    expect(secondState.connectionId).toBe(leaderConn);

    // Exactly one connection on the hub for the two tabs.
    let s = await stats(hub);
    expect(s.connections).toBe(1);
    expect(s.users).toBe(1);
    expect(await userConnections(hub, 'gina')).toEqual([leaderConn]);

    for (let i = 0; i < 5; i++) expect((await publishNext()).delivered).toBe(1);
    await waitForTicks(first, 5);
    await waitForTicks(second, 5);
    expect(await ticks(first)).toEqual(upTo(5));
    expect(await ticks(second)).toEqual(upTo(5));
    expect((await tabState(second)).events.map((e) => e.id)).toEqual(ids);

    // Close the leader tab; publish right away, while the hand-over is in progress.
    await first.close();
    await publishNext();
    await second.waitForFunction(() => (window as any).__herald.role === 'leader' && (window as any).__herald.status === 'open');
    const newConn = (await tabState(second)).connectionId!;
    expect(newConn).toMatch(/^[0-9a-f]{32}$/);
    expect(newConn).not.toBe(leaderConn);
    // The old connection goes away with its tab: back to exactly one.
    await waitUntil('exactly the new leader connection for gina', async () => {
      const c = await userConnections(hub, 'gina');
      return c.length === 1 && c[0] === newConn;
    });
    s = await stats(hub);
    expect(s.connections).toBe(1);

    for (let i = 0; i < 3; i++) await publishNext();
    await waitForTicks(second, 9);
    expect(await ticks(second)).toEqual(upTo(9));
    expect((await tabState(second)).events.map((e) => e.id)).toEqual(ids);

    // A tab opened later joins as a follower of the new leader: still one connection.
    const third = await openTab('gina');
    expect((await tabState(third)).role).toBe('follower');
    expect((await tabState(third)).connectionId).toBe(newConn);
    expect((await stats(hub)).connections).toBe(1);
    await publishNext();
    await waitForTicks(second, 10);
    await waitForTicks(third, 1);
    expect(await ticks(second)).toEqual(upTo(10));
    expect(await ticks(third)).toEqual([10]);

    // Tabs with another user do not join this group.
    const other = await openTab('hank');
    expect((await tabState(other)).role).toBe('leader');
    expect((await stats(hub)).connections).toBe(2);

    expect(browser.errors).toEqual([]);
    await Promise.all([second.close(), third.close(), other.close()]);
    await waitUntil('no connection left', async () => (await stats(hub)).connections === 0);
  });
});
