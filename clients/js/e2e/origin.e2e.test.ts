/**
 * The hub's Origin and Host rules as a real browser meets them: a page on another origin sends a
 * "simple" text/plain POST (no CORS preflight) to publish and to disconnect everyone, and is
 * refused (`403 origin_not_allowed`), even with `--cors-origins '*'`; listed in
 * `--publish-origins`, it may publish. A name rebound to 127.0.0.1 (Chromium's host resolver
 * rules stand in for the attacker's DNS) gets `403 host_not_allowed` from an open hub, on the
 * stream too.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, stats, stopAll, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

let pages: StaticServer;
let browser: Browser;
const hubs: HeraldProcess[] = [];

beforeAll(async () => {
  pages = await serveStatic(inject('pagesDir'));
  browser = await launchBrowser(['--host-resolver-rules=MAP evil.test 127.0.0.1']);
});

afterAll(async () => {
  await browser?.close();
  await stopAll(...hubs);
  await pages?.close();
});

async function hub(args: string[]): Promise<HeraldProcess> {
  const h = await startHerald({ args });
  hubs.push(h);
  return h;
}

/** A POST from the page with a string body: `text/plain`, so the browser sends it without asking. */
async function postFromPage(page: Page, url: string, body: unknown): Promise<{ status: number; code?: string; id?: string }> {
  return page.evaluate(
    async ({ url, body }) => {
      const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      const answer = await res.json().catch(() => ({}));
      return { status: res.status, code: answer?.error?.code, id: answer?.id };
    },
    { url, body },
  );
}

describe('origin and host rules', () => {
  it('refuses publish and disconnect-all from a page on another origin, even with --cors-origins *', async () => {
    const open = await hub(['--cors-origins', '*']);
    const page = await browser.newPage();
    await page.goto(`${pages.url}/react.html`);
    const event = { event: 'x', data: 'from a page', broadcast: true };
    expect(await postFromPage(page, `${open.url}/api/sse/message`, event)).toEqual({ status: 403, code: 'origin_not_allowed' });
    expect(await postFromPage(page, `${open.url}/api/sse/disconnect-all`, {})).toEqual({ status: 403, code: 'origin_not_allowed' });
    expect((await stats(open)).eventsPublished).toBe(0);

    const listed = await hub(['--cors-origins', pages.url, '--publish-origins', pages.url]);
    const ok = await postFromPage(page, `${listed.url}/api/sse/message`, event);
    expect(ok.status).toBe(200);
    expect(typeof ok.id).toBe('string');
    await page.close();
  });

  it('an open hub answers a rebound name with 403 host_not_allowed, stream included', async () => {
    const open = await hub([]);
    const page = await browser.newPage();
    for (const path of ['/sse-test', '/api/sse?userId=alice']) {
      const res = await page.goto(`http://evil.test:${open.port}${path}`);
      expect(res?.status(), path).toBe(403);
      expect(await res?.text()).toContain('host_not_allowed');
    }
    // The same hub under its loopback name serves the console.
    expect((await page.goto(`${open.url}/sse-test`))?.status()).toBe(200);
    await page.close();
  });
});
