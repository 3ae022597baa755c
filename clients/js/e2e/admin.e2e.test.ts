/**
 * The admin dashboard (`GET /admin`, crates/herald/assets/admin.html) in Chromium against the
 * real hub: sign-in (a publish-only key is refused), figures that match /api/sse/stats with
 * subscribers open (npm `eventsource`), the deliveries chart moving under a publish loop, the
 * look-ups, disconnecting a user, disconnect-all behind a confirmation, the publish form,
 * screenshots at 1280×800 and 390×844; the keyless loopback hub; a two-node Redis cluster.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { freePort, postJson, startHerald, stats, stopAll, userConnections, waitUntil, type HeraldProcess } from './helpers/herald.js';
import { ARTIFACTS_DIR } from './paths.js';

const ADMIN_KEY = randomBytes(16).toString('hex');
const PUBLISH_KEY = randomBytes(16).toString('hex');
let browser: Browser;
let dir: string;
const sources: EventSource[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'herald-e2e-admin-'));
  browser = await launchBrowser();
});

afterEach(() => {
  for (const s of sources.splice(0)) s.close();
});

afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const byId = (page: Page, id: string) => page.locator(`[data-testid="${id}"]`);
const text = async (page: Page, id: string) => ((await byId(page, id).textContent()) ?? '').trim();
const num = (s: string) => Number(s.replace(/,/g, ''));

/** A subscriber in Node (npm `eventsource`), recording every event it gets by name. */
interface Subscriber {
  source: EventSource;
  events: { type: string; data: any }[];
  opened: Promise<void>;
}
function subscribe(hub: HeraldProcess, query: string, names: string[] = []): Subscriber {
  const source = new EventSource(`${hub.url}/api/sse?${query}`);
  sources.push(source);
  const events: Subscriber['events'] = [];
  const opened = new Promise<void>((resolve) => source.addEventListener('connected', () => resolve(), { once: true }));
  for (const type of ['connected', 'disconnected', 'notification', ...names]) {
    source.addEventListener(type, (e) => {
      events.push({ type, data: JSON.parse((e as MessageEvent).data) });
      // A disconnected subscriber stays away (EventSource would come back after `retry:`).
      if (type === 'disconnected') source.close();
    });
  }
  return { source, events, opened };
}

/** Sign in through the form with the keyboard only. */
async function signIn(page: Page, key: string) {
  await byId(page, 'key').focus();
  await page.keyboard.type(key);
  await page.keyboard.press('Enter');
}

describe('admin dashboard at /admin (keyed hub)', () => {
  let hub: HeraldProcess;
  beforeAll(async () => {
    const config = join(dir, 'herald.toml');
    await writeFile(
      config,
      `identity_from_query = true\n\n[[publisher_keys]]\nname = "ops"\nkey = "${ADMIN_KEY}"\nadmin = true\n\n` +
        `[[publisher_keys]]\nname = "backend"\nkey = "${PUBLISH_KEY}"\n`,
    );
    hub = await startHerald({ args: ['--config', config, '--heartbeat-interval', '2s'] });
  });
  afterAll(async () => {
    await hub?.stop();
  });

  it('refuses a publish-only key, then shows live figures, charts, look-ups and actions', async () => {
    const page = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
    const res = await page.goto(`${hub.url}/admin`);
    expect(res?.status()).toBe(200);
    expect(await page.title()).toBe('Herald admin');
    await byId(page, 'signin').waitFor();
    expect(await byId(page, 'signin-error').textContent()).toBe('');

    // ---- a publish-only key: the hub's 403 is shown, the dashboard stays hidden
    await signIn(page, PUBLISH_KEY);
    await page.locator('[data-testid="signin-error"][data-ok="false"]', { hasText: 'HTTP 403 forbidden' }).waitFor();
    expect(await text(page, 'signin-error')).toContain('may not use admin endpoints');
    expect(await page.locator('#dash').isHidden()).toBe(true);
    await mkdir(ARTIFACTS_DIR, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-signin-refused.png') });
    // The key is not kept anywhere the page could leak it.
    expect(page.url()).toBe(`${hub.url}/admin`);
    expect(await page.context().cookies()).toEqual([]);

    // ---- the admin key
    await signIn(page, ADMIN_KEY);
    await page.locator('[data-testid="status"][data-status="live"]').waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0); // "keep" was not ticked

    // ---- N subscribers: the figures match /api/sse/stats
    const alice = subscribe(hub, 'userId=alice&username=Alice&channels=news');
    const bob = subscribe(hub, 'userId=bob&channels=news,sport');
    const carol = subscribe(hub, 'userId=carol&channels=sport');
    const anon = subscribe(hub, 'channels=news');
    await Promise.all([alice, bob, carol, anon].map((s) => s.opened));
    const s = await waitUntil('4 connections', async () => {
      const st = await stats(hub, ADMIN_KEY);
      return st.connections === 4 && st;
    });
    // The dashboard's own stream is no connection: still 4 with the page open.
    await page.locator('[data-testid="stat-connections"]', { hasText: /^4$/ }).waitFor();
    expect(await text(page, 'stat-users')).toBe(String(s.users));
    expect(await text(page, 'stat-channels')).toBe(String(Object.keys(s.channels).length));
    expect(s.users).toBe(3);
    await page.locator('[data-testid="stat-published"]', { hasText: new RegExp(`^${s.eventsPublished}$`) }).waitFor();
    expect(await page.locator('[data-testid="nodes"] tbody tr').count()).toBe(1);
    expect(await text(page, 'reason-server_disconnect')).toBe('0');
    // Busiest channels from the same figures.
    await page.locator('[data-testid="top-channels"] tr', { hasText: 'news' }).filter({ hasText: '3' }).waitFor();

    // ---- a small publish loop: the deliveries chart moves
    const rateChart = byId(page, 'chart-rate');
    const before = await rateChart.locator('path').nth(1).getAttribute('d');
    let publishing = true;
    const loop = (async () => {
      while (publishing) {
        const r = await postJson(`${hub.url}/api/sse/message`, { event: 'tick', data: { at: Date.now() }, channels: ['news'] }, PUBLISH_KEY);
        expect(r.status).toBe(200);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await waitUntil('the deliveries chart to show a rate', async () => Number(await rateChart.getAttribute('data-last')) > 0, { timeoutMs: 8_000 });
      const points = Number(await rateChart.getAttribute('data-points'));
      await waitUntil('another point on the deliveries chart', async () => Number(await rateChart.getAttribute('data-points')) > points, { timeoutMs: 5_000 });
      expect(num(await text(page, 'stat-rate'))).toBeGreaterThan(0);
      const after = await rateChart.locator('path').nth(1).getAttribute('d');
      expect(after).not.toBe(before);
      // The line has a peak above the baseline (y < 88 in the 90-high view box).
      const ys = [...after!.matchAll(/[ML][\d.]+ ([\d.]+)/g)].map((m) => Number(m[1]));
      expect(Math.min(...ys)).toBeLessThan(80);
    } finally {
      publishing = false;
      await loop;
    }

    // ---- the replay window matches the hub's
    const h = await waitUntil('the page to show the hub\'s replay window', async () => {
      const st = (await stats(hub, ADMIN_KEY)) as any;
      const shown = await text(page, 'replay-events');
      return shown.startsWith(`${st.history.events.toLocaleString('en-US')} of`) && st.history;
    });
    expect(await text(page, 'replay-oldest')).toBe(h.oldestId);

    // ---- look up a channel
    await byId(page, 'channel-input').fill('news');
    await byId(page, 'channel-input').press('Enter');
    await page.locator('[data-testid="channel-summary"]', { hasText: 'news: 3 subscribers, 2 users, 1 anonymous' }).waitFor();

    // ---- look up a user and disconnect it: its subscriber gets `disconnected`
    const [aliceConn] = await userConnections(hub, 'alice', ADMIN_KEY);
    await byId(page, 'user-input').fill('alice');
    await byId(page, 'user-lookup').click();
    await page.locator('[data-testid="user-summary"]', { hasText: 'alice: online, 1 connection(s)' }).waitFor();
    const conn = page.locator(`[data-testid="user-connection"][data-connection="${aliceConn}"]`);
    expect(await conn.textContent()).toContain('news');
    expect(await conn.textContent()).toContain('name Alice');
    await byId(page, 'user-disconnect').click();
    await page.locator('[data-testid="user-action"]', { hasText: 'Disconnected 1 connection(s).' }).waitFor();
    await waitUntil('alice to get disconnected', () => alice.events.some((e) => e.type === 'disconnected'));
    expect(alice.events.find((e) => e.type === 'disconnected')!.data.reason).toBe('server_disconnect');
    expect(bob.events.some((e) => e.type === 'disconnected')).toBe(false);
    await page.locator('[data-testid="reason-server_disconnect"]', { hasText: /^1$/ }).waitFor();
    await page.locator('[data-testid="stat-connections"]', { hasText: /^3$/ }).waitFor();

    // ---- the publish form delivers
    await byId(page, 'publish-event').fill('notification');
    await byId(page, 'publish-target').selectOption('users');
    await byId(page, 'publish-to').fill('bob');
    await byId(page, 'publish-data').fill('{"title": "From the dashboard"}');
    await byId(page, 'publish-submit').click();
    await page.locator('[data-testid="publish-result"][data-ok="true"]', { hasText: 'delivered to 1 connection(s)' }).waitFor();
    await waitUntil('bob to get the notification', () => bob.events.some((e) => e.type === 'notification' && e.data.title === 'From the dashboard'));
    expect(carol.events.some((e) => e.type === 'notification')).toBe(false);
    // Bad JSON is not sent.
    await byId(page, 'publish-data').fill('{nope');
    await byId(page, 'publish-submit').click();
    await page.locator('[data-testid="publish-result"][data-ok="false"]', { hasText: 'not valid JSON' }).waitFor();
    await byId(page, 'publish-data').fill('{"title": "Deploy at 22:00"}');

    // ---- screenshots (test-artifacts/ is git-ignored)
    await mkdir(ARTIFACTS_DIR, { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-1280x800.png') });
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-1280-full.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    // One more stats event drawn at this width.
    const drawn = Number(await byId(page, 'chart-connections').getAttribute('data-points'));
    await waitUntil('a stats event at 390 px', async () => Number(await byId(page, 'chart-connections').getAttribute('data-points')) > drawn, { timeoutMs: 5_000 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-390x844.png') });
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-390-full.png'), fullPage: true });
    // Nothing wider than the phone's screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.setViewportSize({ width: 1280, height: 800 });

    // ---- disconnect-all asks first: Escape cancels, nobody is disconnected
    await byId(page, 'disconnect-all').click();
    await byId(page, 'confirm').waitFor();
    expect(await text(page, 'confirm')).toContain('All 3 connections end now');
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-confirm.png') });
    await page.keyboard.press('Escape');
    await page.locator('[data-testid="disconnect-all-result"]', { hasText: 'Cancelled' }).waitFor();
    expect((await stats(hub, ADMIN_KEY)).connections).toBe(3);
    expect([bob, carol, anon].some((x) => x.events.some((e) => e.type === 'disconnected'))).toBe(false);
    // Confirmed: everyone goes.
    await byId(page, 'disconnect-all').click();
    await byId(page, 'confirm-ok').click();
    await page.locator('[data-testid="disconnect-all-result"][data-ok="true"]', { hasText: 'Disconnected 3 connection(s).' }).waitFor();
    await waitUntil('every subscriber to get disconnected', () => [bob, carol, anon].every((x) => x.events.some((e) => e.type === 'disconnected')));
    await page.locator('[data-testid="stat-connections"]', { hasText: /^0$/ }).waitFor();
    await page.locator('[data-testid="reason-server_disconnect"]', { hasText: /^4$/ }).waitFor();

    // ---- sign out: back to the form, the stream closed
    await byId(page, 'signout').click();
    await byId(page, 'signin').waitFor();
    expect(browser.errors).toEqual([]);
    await page.close();
  });

  it('keeps the key for the tab only when asked (sessionStorage), and signs out', async () => {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/admin`);
    await byId(page, 'signin').waitFor();
    await byId(page, 'remember').check();
    await signIn(page, ADMIN_KEY);
    await page.locator('[data-testid="status"][data-status="live"]').waitFor();
    await page.reload();
    await page.locator('[data-testid="status"][data-status="live"]').waitFor(); // no sign-in again
    expect(await page.locator('#signin').isHidden()).toBe(true);
    await byId(page, 'signout').click();
    await byId(page, 'signin').waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(browser.errors).toEqual([]);
    await page.close();
  });
});

describe('admin dashboard on a keyless loopback hub', () => {
  it('opens without a sign-in (admin endpoints are open on loopback)', async () => {
    const hub = await startHerald();
    try {
      const page = await browser.newPage();
      await page.goto(`${hub.url}/admin`);
      await page.locator('[data-testid="status"][data-status="live"]').waitFor();
      expect(await page.locator('#signin').isHidden()).toBe(true);
      expect(await byId(page, 'signout').isHidden()).toBe(true);
      const sub = subscribe(hub, 'userId=dave&channels=ops');
      await sub.opened;
      await page.locator('[data-testid="stat-connections"]', { hasText: /^1$/ }).waitFor();
      expect(browser.errors).toEqual([]);
      await page.close();
    } finally {
      await hub.stop();
    }
  });
});

/** A real redis-server on a free port (no persistence), or undefined when not installed. */
async function startRedis(): Promise<{ url: string; stop(): Promise<void> } | undefined> {
  const bin = '/usr/bin/redis-server';
  if (!existsSync(bin)) return undefined;
  const port = await freePort();
  const proc: ChildProcess = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}/0`;
  const { createConnection } = await import('node:net');
  await waitUntil('redis to accept connections', () =>
    new Promise<boolean>((resolve) => {
      const c = createConnection(port, '127.0.0.1');
      c.once('connect', () => { c.end(); resolve(true); });
      c.once('error', () => resolve(false));
    }), { timeoutMs: 10_000, intervalMs: 100 });
  return {
    url,
    async stop() {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

describe('admin dashboard on a two-node Redis cluster', () => {
  it('shows both nodes with their figures, cluster-wide totals that match /api/sse/stats', async () => {
    const redis = await startRedis();
    expect(redis, 'redis-server is installed at /usr/bin/redis-server').toBeDefined();
    const prefix = `e2e-admin-${randomBytes(4).toString('hex')}`;
    const node = (id: string) =>
      startHerald({ args: ['--engine', redis!.url, '--redis-prefix', prefix, '--node-id', id, '--publisher-key', ADMIN_KEY, '--identity-from-query', 'true'] });
    let one: HeraldProcess | undefined;
    let two: HeraldProcess | undefined;
    try {
      one = await node('node-one');
      two = await node('node-two');
      const a = subscribe(one, 'userId=alice&channels=news');
      const b = subscribe(two, 'userId=bob&channels=news');
      const c = subscribe(two, 'userId=carol&channels=news');
      await Promise.all([a.opened, b.opened, c.opened]);
      const page = await browser.newPage();
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.goto(`${one.url}/admin`);
      await signIn(page, ADMIN_KEY);
      await page.locator('[data-testid="status"][data-status="live"]').waitFor();
      expect(await text(page, 'node-id')).toBe('node-one');
      await page.locator('[data-testid="nodes"] tr[data-node="node-two"]').waitFor();
      await page.locator('[data-testid="stat-connections"]', { hasText: /^3$/ }).waitFor();
      const s = (await stats(one, ADMIN_KEY)) as any;
      expect(s.cluster.connections).toBe(3);
      expect(await text(page, 'stat-users')).toBe(String(s.cluster.users));
      const row = (id: string) => page.locator(`[data-testid="nodes"] tr[data-node="${id}"] td`);
      await expect.poll(async () => (await row('node-one').nth(1).textContent())?.trim(), { timeout: 5_000 }).toBe('1');
      await expect.poll(async () => (await row('node-two').nth(1).textContent())?.trim(), { timeout: 5_000 }).toBe('2');
      // A publish loop on node two: node one's row shows its deliveries.
      let publishing = true;
      const loop = (async () => {
        while (publishing) {
          await postJson(`${two!.url}/api/sse/message`, { event: 'tick', data: 1, channels: ['news'] }, ADMIN_KEY);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      try {
        await expect.poll(async () => num((await row('node-one').nth(3).textContent()) ?? '0'), { timeout: 10_000 }).toBeGreaterThan(0);
        await expect.poll(async () => num((await row('node-two').nth(3).textContent()) ?? '0'), { timeout: 10_000 }).toBeGreaterThan(0);
        await expect.poll(async () => Number(await byId(page, 'chart-rate').getAttribute('data-last')), { timeout: 10_000 }).toBeGreaterThan(0);
        // The cluster-wide rate is the sum of the nodes' (node two delivers twice as many).
        const points = Number(await byId(page, 'chart-rate').getAttribute('data-points'));
        await expect.poll(async () => Number(await byId(page, 'chart-rate').getAttribute('data-points')), { timeout: 10_000 }).toBeGreaterThan(points + 2);
        await mkdir(ARTIFACTS_DIR, { recursive: true });
        await page.screenshot({ path: join(ARTIFACTS_DIR, 'admin-cluster-1280x800.png') });
      } finally {
        publishing = false;
        await loop;
      }
      expect(browser.errors).toEqual([]);
      await page.close();
    } finally {
      for (const s of sources.splice(0)) s.close();
      await stopAll(one, two);
      await redis?.stop();
    }
  });
});
