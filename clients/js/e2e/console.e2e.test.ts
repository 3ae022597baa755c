/**
 * The test console (`GET /sse-test`, crates/herald/assets/sse-test.html) in Chromium against the
 * real hub: connect, publish to a user / channel / connection / everyone through the send form,
 * errors, listening to more event names, the log's filter, stats, disconnect-all, screenshot.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { postJson, startHerald, stats, userConnections, waitUntil, type HeraldProcess } from './helpers/herald.js';
import { ARTIFACTS_DIR } from './paths.js';

const KEY = randomBytes(16).toString('hex');
let hub: HeraldProcess;
let browser: Browser;

beforeAll(async () => {
  // A publisher key, so that the console's key field is exercised; a short retry hint so the
  // browser's own reconnect after disconnect-all is quick; frequent heartbeats. With a key,
  // `userId` from the query is off by default: the console's user field needs it on.
  hub = await startHerald({
    args: ['--publisher-key', KEY, '--identity-from-query', 'true', '--retry', '300ms', '--heartbeat-interval', '1s', '--presence-channels', 'news'],
  });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await hub?.stop();
});

const byId = (page: Page, id: string) => page.locator(`[data-testid="${id}"]`);
const entries = (page: Page, event: string) => page.locator(`[data-testid="log-entry"][data-event="${event}"]`);

/** The JSON part of the send result ("HTTP 200\n{...}"). */
async function sendAnswer(page: Page, ok: boolean): Promise<any> {
  const result = page.locator(`[data-testid="send-result"][data-ok="${ok}"]`);
  await result.waitFor();
  const text = (await result.textContent()) ?? '';
  const json = text.slice(text.indexOf('\n') + 1);
  return { text, body: JSON.parse(json) };
}

/** Fill and submit the send form; resolves once the answer for THIS send is shown. */
async function send(page: Page, opts: { event: string; data: string; target: 'user' | 'channel' | 'connection' | 'everyone'; to?: string }) {
  await byId(page, 'send-event').fill(opts.event);
  await byId(page, 'send-data').fill(opts.data);
  await byId(page, 'send-target').selectOption(opts.target);
  if (opts.target !== 'everyone') await byId(page, 'send-to').fill(opts.to ?? '');
  // Clear the previous answer first, so that waiting for the next one cannot see a stale one.
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid="send-result"]') as HTMLElement;
    el.dataset.ok = '';
    el.textContent = '';
  });
  await byId(page, 'send').click();
  await page.locator('[data-testid="send-result"][data-ok="true"], [data-testid="send-result"][data-ok="false"]').waitFor();
}

describe('test console at /sse-test', () => {
  it('connects, publishes to every kind of target, shows errors, disconnect-all, and takes a screenshot', async () => {
    const page = await browser.newPage();
    const published: string[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/api/sse/message')) published.push(r.postData() ?? '');
    });
    const res = await page.goto(`${hub.url}/sse-test`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['x-frame-options']).toBe('DENY');
    expect(await page.title()).toBe('Herald test console');
    await expect.poll(() => byId(page, 'status').getAttribute('data-status')).toBe('closed');
    // The hub has a key and the field is empty: stats polling shows the 401 until it is filled.
    await page.locator('[data-testid="stats-error"]', { hasText: 'unauthorized' }).waitFor();

    // ---- connect
    await byId(page, 'user-id').fill('alice');
    await byId(page, 'username').fill('Alice');
    await byId(page, 'channels').fill('news, orders');
    await byId(page, 'connect').click();
    await page.locator('[data-testid="status"][data-status="open"]').waitFor();
    await entries(page, 'connected').first().waitFor();
    const connectionId = (await byId(page, 'connection-id').textContent())!.trim();
    expect(connectionId).toMatch(/^[0-9a-f]{32}$/);
    expect(await entries(page, 'connected').first().textContent()).toContain('"userId": "alice"');
    expect(await userConnections(hub, 'alice', KEY)).toEqual([connectionId]);

    // ---- a send without the key: the server's 401, shown as is
    await send(page, { event: 'notification', data: '{"title":"Hi Alice"}', target: 'user', to: 'alice' });
    const denied = await sendAnswer(page, false);
    expect(denied.text).toContain('HTTP 401 unauthorized');
    expect(denied.body.error.code).toBe('unauthorized');

    // ---- with the key: to the user
    await byId(page, 'publisher-key').fill(KEY);
    await send(page, { event: 'notification', data: '{"title":"Hi Alice"}', target: 'user', to: 'alice' });
    const toUser = (await sendAnswer(page, true)).body;
    expect(toUser).toEqual({ id: expect.any(String), delivered: 1 });
    const noteEntry = page.locator(`[data-testid="log-entry"][data-event="notification"][data-id="${toUser.id}"]`);
    await noteEntry.waitFor();
    expect(await noteEntry.textContent()).toContain('"title": "Hi Alice"');
    // The stats panel now polls with the key.
    await page.locator('[data-testid="stat-connections"]', { hasText: /^1$/ }).waitFor();
    expect(await byId(page, 'stats-error').isHidden()).toBe(true);
    expect(await byId(page, 'stat-users').textContent()).toBe('1');
    expect(await byId(page, 'stat-channels').textContent()).toBe('2');

    // ---- to a channel
    await send(page, { event: 'update', data: '{"orderId": 42, "state": "shipped"}', target: 'channel', to: 'orders' });
    const toChannel = (await sendAnswer(page, true)).body;
    expect(toChannel.delivered).toBe(1);
    await page.locator(`[data-testid="log-entry"][data-event="update"][data-id="${toChannel.id}"]`).waitFor();

    // ---- to everyone
    await send(page, { event: 'alert', data: '"maintenance at 22:00"', target: 'everyone' });
    const toAll = (await sendAnswer(page, true)).body;
    expect(toAll.delivered).toBe(1);
    await page.locator(`[data-testid="log-entry"][data-event="alert"][data-id="${toAll.id}"]`).waitFor();

    // ---- to this connection (empty "to" = mine), unnamed event `message`
    await send(page, { event: 'message', data: '{"direct": true}', target: 'connection', to: '' });
    const toConn = (await sendAnswer(page, true)).body;
    expect(toConn.delivered).toBe(1);
    expect(JSON.parse(published.at(-1)!)).toEqual({ event: 'message', data: { direct: true }, connections: [connectionId] });
    await page.locator(`[data-testid="log-entry"][data-event="message"][data-id="${toConn.id}"]`).waitFor();

    // ---- a named event nobody listens to is not delivered by EventSource; after "Listen" it is
    await send(page, { event: 'orders.created', data: '{"orderId": 7}', target: 'user', to: 'alice' });
    expect((await sendAnswer(page, true)).body.delivered).toBe(1); // the hub sent it...
    await send(page, { event: 'notification', data: '{"marker": 1}', target: 'user', to: 'alice' });
    const marker = (await sendAnswer(page, true)).body;
    await page.locator(`[data-testid="log-entry"][data-id="${marker.id}"]`).waitFor();
    expect(await entries(page, 'orders.created').count()).toBe(0); // ...but the page had no listener
    await byId(page, 'listen-name').fill('orders.created');
    await byId(page, 'listen-add').click();
    await page.locator('[data-testid="listened-event"][data-event="orders.created"]').waitFor();
    await send(page, { event: 'orders.created', data: '{"orderId": 8}', target: 'user', to: 'alice' });
    const created = (await sendAnswer(page, true)).body;
    await page.locator(`[data-testid="log-entry"][data-event="orders.created"][data-id="${created.id}"]`).waitFor();

    // ---- errors: bad JSON is refused before sending; the server's own errors are shown as is
    const before = published.length;
    await send(page, { event: 'notification', data: '{bad json', target: 'user', to: 'alice' });
    const badJson = page.locator('[data-testid="send-result"][data-ok="false"]');
    expect(await badJson.textContent()).toContain('Not sent: data is not valid JSON');
    expect(published.length).toBe(before);

    const invalidName = { event: 'bad name!', data: { x: 1 }, users: ['alice'] };
    const expected = await postJson(`${hub.url}/api/sse/message`, invalidName, KEY);
    expect(expected.status).toBe(400);
    await send(page, { event: 'bad name!', data: '{"x": 1}', target: 'user', to: 'alice' });
    const shownInvalid = await sendAnswer(page, false);
    expect(shownInvalid.body).toEqual(expected.body);
    expect(shownInvalid.text).toContain(`HTTP 400 ${expected.body.error.code}: ${expected.body.error.message}`);

    await send(page, { event: 'connected', data: '{}', target: 'user', to: 'alice' });
    const reserved = await sendAnswer(page, false);
    expect(reserved.body.error.code).toBe('reserved_event');
    expect(reserved.text).toContain(reserved.body.error.message);

    // ---- heartbeats arrive (1 s here) and can be hidden
    await entries(page, 'heartbeat').first().waitFor();
    await byId(page, 'show-heartbeats').uncheck();
    expect(await entries(page, 'heartbeat').first().isHidden()).toBe(true);

    // ---- the filter
    await byId(page, 'log-filter').fill('update');
    await page.locator(`[data-testid="log-entry"][data-id="${toAll.id}"]`).waitFor({ state: 'hidden' });
    expect(await page.locator(`[data-testid="log-entry"][data-id="${toChannel.id}"]`).isVisible()).toBe(true);
    await byId(page, 'log-filter').fill('');
    await page.locator(`[data-testid="log-entry"][data-id="${toAll.id}"]`).waitFor({ state: 'visible' });

    // ---- disconnect-all: `disconnected` shows, the browser reconnects (retry 300 ms) as a new connection
    await byId(page, 'disconnect-all').click();
    await page.locator('[data-testid="admin-result"][data-ok="true"]', { hasText: 'HTTP 200 {"disconnected":1}' }).waitFor();
    const bye = entries(page, 'disconnected').first();
    await bye.waitFor();
    expect(await bye.textContent()).toContain('"reason": "server_disconnect"');
    await waitUntil('a new connection after disconnect-all', async () => {
      const id = (await byId(page, 'connection-id').textContent())!.trim();
      return (await byId(page, 'status').getAttribute('data-status')) === 'open' && /^[0-9a-f]{32}$/.test(id) && id !== connectionId;
    });
    expect(await entries(page, 'connected').count()).toBe(2);

    // Still delivered after the reconnect; every event id appears once in the log (no replay duplicates).
    await send(page, { event: 'notification', data: '{"title": "After the reconnect"}', target: 'user', to: 'alice' });
    const after = (await sendAnswer(page, true)).body;
    expect(after.delivered).toBe(1);
    await page.locator(`[data-testid="log-entry"][data-id="${after.id}"]`).waitFor();
    const ids = await page.locator('[data-testid="log-entry"][data-kind="event"][data-id]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.id));
    expect(new Set(ids).size).toBe(ids.length);

    // Stats agree with the hub. `eventsPublished` counts the 8 accepted publishes plus the
    // presence events of `news` (alice's join, and her leave and join around the reconnect),
    // which the hub publishes asynchronously.
    const hubStats = await stats(hub, KEY);
    await page.locator('[data-testid="stat-published"]', { hasText: new RegExp(`^${hubStats.eventsPublished}$`) }).waitFor();
    expect(hubStats.eventsPublished).toBeGreaterThanOrEqual(8);
    expect(hubStats.eventsPublished).toBeLessThanOrEqual(11);

    // ---- presence: bob opens the console on `news` (a presence channel here), then leaves
    const bobPage = await browser.newPage();
    await bobPage.goto(`${hub.url}/sse-test?userId=bob&username=Bob&channels=news&connect=1`);
    await bobPage.locator('[data-testid="status"][data-status="open"]').waitFor();
    const joined = entries(page, 'presence:join').first();
    await joined.waitFor();
    expect(await joined.textContent()).toContain('"userId": "bob"');
    expect(await joined.getAttribute('data-id')).toMatch(/\S/); // presence events carry ids
    await bobPage.close();
    const leave = entries(page, 'presence:leave').first();
    await leave.waitFor();
    expect(await leave.textContent()).toContain('"userId": "bob"');

    // ---- screenshot (test-artifacts/ is git-ignored)
    await byId(page, 'send-data').fill('{"title": "Order shipped", "orderId": 42}');
    await mkdir(ARTIFACTS_DIR, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'sse-test-console.png'), fullPage: true });

    // ---- Disconnect: closed, and the hub drops the connection
    await byId(page, 'disconnect').click();
    await page.locator('[data-testid="status"][data-status="closed"]').waitFor();
    expect((await byId(page, 'connection-id').textContent())!.trim()).toBe('—');
    await waitUntil('alice to have no connection', async () => (await userConnections(hub, 'alice', KEY)).length === 0);

    expect(browser.errors).toEqual([]);
  });

  it('shows why a connect failed (a bad channel name) instead of retrying forever', async () => {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/sse-test?userId=bob&channels=${encodeURIComponent('bad channel!')}&connect=1`);
    await page.locator('[data-testid="status"][data-status="closed"]').waitFor();
    const failed = page.locator('[data-testid="log-entry"][data-event="connect failed"]');
    await failed.waitFor();
    const text = (await failed.textContent())!;
    expect(text).toContain('"status": 400');
    expect(text).toContain('"code": "invalid_field"');
    expect(browser.errors).toEqual([]);
    await page.close();
  });
});
