/**
 * `useSSE` from the built package, in a React page bundled with esbuild and served from another
 * origin than the hub (so `--cors-origins` is exercised), with events published from Node by
 * `HeraldPublisher`: each page gets the events targeted at its user and none of the others',
 * under names the page never listed (the client's default fetch reader asks for `envelope=1`).
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { HeraldPublisher } from '../dist/publisher.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, userConnections, waitUntil, type HeraldProcess } from './helpers/herald.js';
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

interface Shown {
  event: string;
  id: string;
  data: unknown;
}

async function shown(page: Page): Promise<Shown[]> {
  return page.locator('[data-testid="event"]').evaluateAll((els) =>
    els.map((el) => {
      const e = el as HTMLElement;
      return { event: e.dataset.event!, id: e.dataset.id!, data: JSON.parse(e.textContent!) };
    }),
  );
}

async function openApp(userId: string): Promise<{ page: Page; corsHeader: Promise<string | undefined>; reader: { type: string; envelope: string | null } }> {
  const page = await browser.newPage();
  const response = page.waitForResponse((r) => r.url().startsWith(`${hub.url}/api/sse?`), { timeout: 15_000 });
  const corsHeader = response.then((r) => r.headers()['access-control-allow-origin']);
  const reader = { type: '', envelope: null as string | null };
  void response.then((r) => {
    reader.type = r.request().resourceType();
    reader.envelope = new URL(r.url()).searchParams.get('envelope');
  });
  await page.goto(`${pages.url}/react.html?hub=${encodeURIComponent(hub.url)}&userId=${userId}`);
  await page.locator('[data-testid="app"][data-status="open"]').waitFor();
  await response;
  return { page, corsHeader, reader };
}

describe('useSSE (React) from dist/', () => {
  it('receives the events of its user only, across origins', async () => {
    const alice = await openApp('alice');
    const bob = await openApp('bob');
    // The page is on another origin; the hub answered with the CORS header for it.
    expect(new URL(pages.url).origin).not.toBe(new URL(hub.url).origin);
    expect(await alice.corsHeader).toBe(pages.url);
    expect(await bob.corsHeader).toBe(pages.url);

    // StrictMode's mount/unmount/mount leaves exactly one connection per user, and the page
    // shows the connection id the hub knows.
    const aliceConn = await waitUntil('one connection for alice', async () => {
      const c = await userConnections(hub, 'alice');
      return c.length === 1 ? c : undefined;
    });
    expect(await alice.page.locator('[data-testid="app"]').getAttribute('data-connection-id')).toBe(aliceConn[0]);
    expect(await userConnections(hub, 'bob')).toHaveLength(1);

    // Interleave events for bob and alice, under names the page never listed (envelope=1).
    const sent: Record<string, { id: string; event: string; data: unknown }[]> = { alice: [], bob: [] };
    const record = async (user: 'alice' | 'bob', event: string, data: unknown, p: Promise<{ id: string; delivered: number }>) => {
      const r = await p;
      expect(r.delivered).toBe(1);
      sent[user]!.push({ id: r.id, event, data });
    };
    await record('bob', 'notification', { message: 'for bob 1' }, publisher.notifyUser('bob', 'for bob 1'));
    await record('alice', 'order_update', { orderId: '123', status: 'shipped' }, publisher.sendToUser('alice', { type: 'order_update', data: { orderId: '123', status: 'shipped' } }));
    await record('bob', 'alert', { message: 'bob alert', severity: 'warning' }, publisher.sendAlert('bob', 'bob alert', 'warning'));
    await record(
      'alice',
      'update',
      { type: 'order', payload: { id: 42 } },
      publisher.sendUpdate('alice', 'order', { id: 42 }),
    );
    await record(
      'alice',
      'notification',
      { title: 'Shipped', message: 'Order 42', type: 'success' },
      publisher.sendNotification('alice', 'Shipped', 'Order 42', 'success'),
    );
    // A last event to both: once it is shown, everything published before it to that user is
    // too (the hub keeps publish order per connection), so a stray event would be visible by now.
    await record('bob', 'dashboardUpdate', { widgets: 3 }, publisher.sendToUser('bob', 'dashboardUpdate', { widgets: 3 }));
    const last = await publisher.sendToUsers('notification', { title: 'last' }, ['alice', 'bob']);
    expect(last.delivered).toBe(2);
    for (const user of ['alice', 'bob'] as const) sent[user]!.push({ id: last.id, event: 'notification', data: { title: 'last' } });

    await alice.page.locator(`[data-testid="event"][data-id="${last.id}"]`).waitFor();
    await bob.page.locator(`[data-testid="event"][data-id="${last.id}"]`).waitFor();
    expect(await shown(alice.page)).toEqual(sent.alice);
    expect(await shown(bob.page)).toEqual(sent.bob);

    // Closing the tab ends its connection on the hub.
    // Chromium read the stream with fetch (not EventSource), asking for envelope=1.
    expect(alice.reader).toEqual({ type: 'fetch', envelope: '1' });
    await bob.page.close();
    await waitUntil('bob to be gone', async () => (await userConnections(hub, 'bob')).length === 0);
    expect(await userConnections(hub, 'alice')).toEqual(aliceConn);
    expect(browser.errors).toEqual([]);
  });
});
