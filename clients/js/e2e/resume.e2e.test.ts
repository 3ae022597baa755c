/**
 * No lost and no duplicate events across a hub restart with durable history (`--data-dir`), and
 * across server-side connection cuts while events are being published. The page runs
 * HeraldClient from dist/, which reconnects with `lastEventId`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeraldPublisher } from '../dist/publisher.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { freePort, startHerald, stopAll, userConnections, waitUntil, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

interface PageState {
  events: { event: string; id: string | undefined; data: { n: number } }[];
  connected: string[];
  disconnected: { reason: string }[];
  resets: unknown[];
  status: string;
}

let pages: StaticServer;
let browser: Browser;
const hubs: HeraldProcess[] = [];
const dirs: string[] = [];

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
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const BACKOFF = JSON.stringify({ initialDelay: 150, maxDelay: 1000 });

async function openClient(hub: { url: string }, userId: string): Promise<Page> {
  const page = await browser.newPage();
  const q = new URLSearchParams({ hub: hub.url, userId, share: '0', backoff: BACKOFF, events: 'tick' });
  await page.goto(`${pages.url}/client.html?${q}`);
  await page.waitForFunction(() => (window as any).__herald.status === 'open');
  return page;
}

const state = (page: Page) => page.evaluate(() => (window as any).__herald as PageState);

/** Wait until the page holds `count` tick events (fails early on more). */
async function waitForTicks(page: Page, count: number, timeout = 20_000): Promise<void> {
  await page.waitForFunction((n) => (window as any).__herald.events.length >= n, count, { timeout });
}

/** The page must hold exactly the ticks 1..n, in order, each with a distinct id. */
async function expectExactly(page: Page, n: number, ids: string[]): Promise<PageState> {
  const s = await state(page);
  expect(s.events.map((e) => e.data.n)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  expect(s.events.map((e) => e.id)).toEqual(ids);
  expect(new Set(ids).size).toBe(n);
  expect(s.resets).toEqual([]);
  return s;
}

describe('resume with lastEventId', () => {
  it('loses and repeats nothing across a hub restart with --data-dir', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'herald-e2e-data-'));
    dirs.push(dataDir);
    const port = await freePort();
    const args = [
      '--data-dir', dataDir,
      '--cors-origins', pages.url,
      '--shutdown-timeout', '3s',
      '--shutdown-reconnect-window', '200ms',
    ];
    let hub = await startHerald({ port, args });
    hubs.push(hub);
    const publisher = new HeraldPublisher({ url: hub.url, timeoutMs: 5_000, retries: 0 });
    const page = await openClient(hub, 'dave');
    const ids: string[] = [];
    const publish = async (n: number) => {
      const r = await publisher.sendToUser('dave', 'tick', { n });
      ids.push(r.id);
      return r;
    };

    for (let n = 1; n <= 5; n++) expect((await publish(n)).delivered).toBe(1);
    await waitForTicks(page, 5);

    // Stop the hub (SIGTERM: `disconnected` server_shutdown, then exit). Publish nothing while down.
    expect(await hub.stop('SIGTERM')).toBe(0);
    await page.waitForFunction(() => (window as any).__herald.status === 'reconnecting');
    expect((await state(page)).disconnected.map((d) => d.reason)).toEqual(['server_shutdown']);

    // Same port and data dir; publish right away, before the client is back (delivered 0): only
    // the durable replay window can bring these events to the page.
    hub = await startHerald({ port, args });
    hubs.push(hub);
    const afterRestart: number[] = [];
    for (let n = 6; n <= 10; n++) afterRestart.push((await publish(n)).delivered);

    await waitForTicks(page, 10);
    // Then live events on the resumed connection.
    for (let n = 11; n <= 12; n++) expect((await publish(n)).delivered).toBe(1);
    await waitForTicks(page, 12);
    const s = await expectExactly(page, 12, ids);
    expect(s.connected).toHaveLength(2);
    expect(s.status).toBe('open');
    // Report how many of 6..10 the client was already back for (0 = all came from the replay).
    console.info(`[resume] delivered counts right after the restart: ${afterRestart.join(',')}`);
    expect(await userConnections(hub, 'dave')).toEqual([s.connected[1]]);
    await page.close();
  });

  it('loses and repeats nothing when the hub cuts the connection while events are published', async () => {
    const hub = await startHerald({ args: ['--cors-origins', pages.url] });
    hubs.push(hub);
    const publisher = new HeraldPublisher({ url: hub.url, timeoutMs: 5_000, retries: 0 });
    const page = await openClient(hub, 'erin');
    const ids: string[] = [];
    let n = 0;
    const publishNext = async () => ids.push((await publisher.sendToUser('erin', 'tick', { n: ++n })).id);
    const connections = async () => (await state(page)).connected.length;

    for (let cut = 1; cut <= 3; cut++) {
      // Events flow, then the hub cuts erin off in the middle of a burst.
      for (let i = 0; i < 10; i++) await publishNext();
      const [kicked] = await Promise.all([
        publisher.disconnect({ users: ['erin'] }),
        (async () => {
          for (let i = 0; i < 10; i++) await publishNext();
        })(),
      ]);
      expect(kicked.disconnected).toBe(1);
      // More while the client is away (until it is back on a new connection).
      for (let i = 0; i < 5; i++) await publishNext();
      await page.waitForFunction((c) => (window as any).__herald.connected.length > c && (window as any).__herald.status === 'open', cut);
      expect(await connections()).toBe(cut + 1);
    }
    for (let i = 0; i < 5; i++) await publishNext();
    await waitForTicks(page, n);
    const s = await expectExactly(page, n, ids);
    expect(s.disconnected.map((d) => d.reason)).toEqual(['server_disconnect', 'server_disconnect', 'server_disconnect']);
    await page.close();
  });

  it('loses and repeats nothing when the hub restarts in the middle of a stream of events', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'herald-e2e-data-'));
    dirs.push(dataDir);
    const port = await freePort();
    const args = ['--data-dir', dataDir, '--cors-origins', pages.url, '--shutdown-timeout', '3s', '--shutdown-reconnect-window', '200ms'];
    let hub = await startHerald({ port, args });
    hubs.push(hub);
    const publisher = new HeraldPublisher({ url: hub.url, timeoutMs: 5_000, retries: 0 });
    const page = await openClient(hub, 'frank');
    const ids: string[] = [];
    let n = 0;
    const publishNext = async () => ids.push((await publisher.sendToUser('frank', 'tick', { n: ++n })).id);

    // A producer publishing back to back (at most MAX events), and a restart in the middle; the
    // producer pauses only while no hub is listening (publishing nothing while down).
    const MAX = 400;
    let running = true;
    let hubUp = true;
    let paused: (() => void) | undefined;
    const producer = (async () => {
      while (running && n < MAX) {
        if (!hubUp) await new Promise<void>((r) => (paused = r));
        await publishNext();
      }
    })();
    await waitForTicks(page, 20);
    hubUp = false;
    // The in-flight publish finishes before the stop, so none is lost in transit.
    await waitUntil('the producer to pause', () => paused !== undefined);
    const beforeStop = n;
    expect(await hub.stop('SIGTERM')).toBe(0);
    hub = await startHerald({ port, args });
    hubs.push(hub);
    hubUp = true;
    paused!();
    await page.waitForFunction(() => (window as any).__herald.connected.length === 2 && (window as any).__herald.status === 'open');
    // Keep publishing on the resumed connection for a while, then stop the producer.
    const target = Math.min(n + 20, MAX);
    await waitUntil('20 more events after the reconnect', () => n >= target);
    running = false;
    await producer;
    expect(n).toBeGreaterThan(beforeStop);
    await waitForTicks(page, n);
    console.info(`[resume] restart mid-stream: ${beforeStop} events before the stop, ${n} in all`);
    await expectExactly(page, n, ids);
    await page.close();
  });
  it('announces a restart without --data-dir with `reset` (unknown_epoch), then carries on', async () => {
    const port = await freePort();
    const args = ['--cors-origins', pages.url, '--shutdown-timeout', '3s', '--shutdown-reconnect-window', '200ms'];
    let hub = await startHerald({ port, args });
    hubs.push(hub);
    const publisher = new HeraldPublisher({ url: hub.url, timeoutMs: 5_000, retries: 0 });
    const page = await openClient(hub, 'ivy');
    await publisher.sendToUser('ivy', 'tick', { n: 1 });
    await waitForTicks(page, 1);
    expect(await hub.stop('SIGTERM')).toBe(0);
    hub = await startHerald({ port, args });
    hubs.push(hub);
    // The memory-only window is gone: the hub cannot replay, and says so.
    await page.waitForFunction(() => (window as any).__herald.resets.length === 1 && (window as any).__herald.status === 'open');
    const s = await state(page);
    expect(s.resets).toEqual([expect.objectContaining({ reason: 'unknown_epoch' })]);
    await publisher.sendToUser('ivy', 'tick', { n: 2 });
    await waitForTicks(page, 2);
    expect((await state(page)).events.map((e) => e.data.n)).toEqual([1, 2]);
    await page.close();
  });
});
