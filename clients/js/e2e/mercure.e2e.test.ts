/**
 * Herald as a Mercure hub (`--mercure`) in Chromium, with the browser's own `EventSource` on
 * `/.well-known/mercure`, from a page on another origin: anonymous subscribers (0.x `topic=` and
 * 1.0 `match=` / `match_urlpattern=`); cookie-authenticated ones (`withCredentials`, the 0.x
 * `mercureAuthorization` cookie with a `mercure` claim and the 1.0
 * `__Secure-mercure_access_token` cookie with an `at+jwt` access token) getting a private
 * update; multi-line data byte for byte, the publisher's ids as `lastEventId`, `type` as the
 * event's name; and after the hub drops the stream (`POST /api/sse/disconnect-all`), the
 * browser's reconnection with `Last-Event-ID` gets what was published in the gap, and a
 * trailing marker shows nothing arrived twice.
 */
import { createHmac } from 'node:crypto';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { launchBrowser, type Browser } from './helpers/browser.js';
import { startHerald, stopAll, type HeraldProcess } from './helpers/herald.js';
import { serveStatic, type StaticServer } from './helpers/static-server.js';

const SECRET = '!ChangeThisMercureHubJWTSecretKey!';
const DETAIL = 'https://mercure.rocks/authorization-detail';
const END = 'urn:e2e:end';

interface Seen {
  type: string;
  id: string;
  data: string;
}

interface PageState {
  events: Seen[];
  opens: number;
  errors: number;
}

let pages: StaticServer;
let browser: Browser;
const hubs: HeraldProcess[] = [];

beforeAll(async () => {
  pages = await serveStatic(inject('pagesDir'));
  browser = await launchBrowser();
});

afterEach(async () => {
  await browser.context.clearCookies();
  await stopAll(...hubs.splice(0));
});

afterAll(async () => {
  await browser?.close();
  await pages?.close();
});

const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');

/** An HS256 JWT with this `typ` and these claims. */
function jwt(claims: object, typ = 'JWT'): string {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ }));
  const body = b64url(JSON.stringify(claims));
  return `${head}.${body}.${b64url(createHmac('sha256', SECRET).update(`${head}.${body}`).digest())}`;
}

/** A Mercure 1.0 access token for `hub` (its URL as reached is the default resource identifier). */
function accessToken(hub: HeraldProcess, actions: string[], topics: object[]): string {
  return jwt(
    {
      aud: `${hub.url}/.well-known/mercure`,
      exp: Math.floor(Date.now() / 1000) + 3600,
      authorization_details: [{ type: DETAIL, actions, topics }],
    },
    'at+jwt',
  );
}

async function hub(extra: string[] = []): Promise<HeraldProcess> {
  const h = await startHerald({
    args: [
      '--mercure',
      '--mercure-publisher-jwt-key',
      SECRET,
      '--mercure-subscriber-jwt-key',
      SECRET,
      '--cors-origins',
      pages.url,
      // Chromium waits this long before it reconnects a dropped EventSource.
      '--retry',
      '1000',
      ...extra,
    ],
  });
  hubs.push(h);
  return h;
}

/** A form publish with a 0.x publisher token, as Symfony's Mercure component posts it. */
async function publish(h: HeraldProcess, fields: [string, string][]): Promise<string> {
  const res = await fetch(`${h.url}/.well-known/mercure`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${jwt({ mercure: { publish: ['*'] } })}`,
      'Content-Type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams(fields).toString(),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return text.trim();
}

/**
 * A page on the static server's origin whose `EventSource` subscribes to `query` on the hub and
 * records every `message` event and every event of `types`; resolves once it is open.
 */
async function subscribe(
  h: HeraldProcess,
  query: [string, string][],
  options: { withCredentials?: boolean; types?: string[] } = {},
): Promise<Page> {
  const page = await browser.newPage();
  // Any document of that origin will do: the subscriber is the script below.
  await page.goto(`${pages.url}/mercure-subscriber`);
  const url = `${h.url}/.well-known/mercure?${new URLSearchParams(query)}`;
  await page.evaluate(
    ({ url, withCredentials, types }) => {
      const w = window as any; // eslint-disable-line @typescript-eslint/no-explicit-any
      w.__m = { events: [], opens: 0, errors: 0 };
      const es = new EventSource(url, { withCredentials });
      const push = (e: MessageEvent) => w.__m.events.push({ type: e.type, id: e.lastEventId, data: e.data });
      es.onmessage = push;
      for (const t of types) es.addEventListener(t, push as EventListener);
      es.onopen = () => w.__m.opens++;
      es.onerror = () => w.__m.errors++;
      w.__es = es;
    },
    { url, withCredentials: options.withCredentials ?? false, types: options.types ?? [] },
  );
  await page.waitForFunction(() => (window as any).__m.opens >= 1, undefined, { timeout: 10_000 });
  return page;
}

const state = (page: Page) => page.evaluate(() => (window as any).__m as PageState);

/** Every event up to the marker (excluded), once the marker has arrived. */
async function untilEnd(page: Page): Promise<Seen[]> {
  await page.waitForFunction(() => (window as any).__m.events.some((e: Seen) => e.data === 'end'), undefined, {
    timeout: 10_000,
  });
  const { events } = await state(page);
  const at = events.findIndex((e) => e.data === 'end');
  expect(events.length, 'nothing after the marker').toBe(at + 1);
  return events.slice(0, at);
}

const MULTILINE = 'first line\n\n  third, indented\nlast: with a colon, é ✓\n';

describe("Chromium's EventSource on /.well-known/mercure", () => {
  it('anonymous 0.x and 1.0 subscribers: multi-line data byte for byte, ids, types', async () => {
    const h = await hub(['--mercure-anonymous']);
    const old = await subscribe(
      h,
      [
        ['topic', 'https://example.com/books/{id}'],
        ['topic', END],
      ],
      { types: ['book updated'] },
    );
    const v1 = await subscribe(
      h,
      [
        ['match_urlpattern', 'https://example.com/books/:id'],
        ['match', END],
      ],
      { types: ['book updated'] },
    );
    const id1 = await publish(h, [
      ['topic', 'https://example.com/books/1'],
      ['data', MULTILINE],
      ['id', 'https://example.com/updates/1'],
    ]);
    expect(id1).toBe('https://example.com/updates/1');
    await publish(h, [
      ['topic', 'https://example.com/books/2'],
      ['data', '{"title": "Typed"}'],
      ['type', 'book updated'],
      ['id', 'urn:e2e:2'],
    ]);
    await publish(h, [['topic', 'https://example.com/authors/1'], ['data', 'not a book']]);
    const generated = await publish(h, [['topic', 'https://example.com/books/3'], ['data', '']]);
    expect(generated).toMatch(/^urn:uuid:/);
    await publish(h, [['topic', END], ['data', 'end']]);
    const want: Seen[] = [
      { type: 'message', id: 'https://example.com/updates/1', data: MULTILINE },
      { type: 'book updated', id: 'urn:e2e:2', data: '{"title": "Typed"}' },
      { type: 'message', id: generated, data: '' },
    ];
    expect(await untilEnd(old)).toEqual(want);
    expect(await untilEnd(v1)).toEqual(want);
    for (const p of [old, v1]) {
      expect((await state(p)).errors).toBe(0);
      await p.close();
    }
  });

  for (const [generation, cookie, selector] of [
    ['0.x', 'mercureAuthorization', 'topic'],
    ['1.0', '__Secure-mercure_access_token', 'match'],
  ] as const) {
    it(`${generation}: the ${cookie} cookie opens private updates to withCredentials`, async () => {
      const h = await hub(['--cors-credentials']);
      const token =
        generation === '0.x'
          ? jwt({ mercure: { subscribe: ['urn:e2e:private'] } })
          : accessToken(h, ['subscribe'], [{ match: 'urn:e2e:private' }]);
      await browser.context.addCookies([
        { name: cookie, value: token, domain: '127.0.0.1', path: '/', secure: true, httpOnly: true, sameSite: 'Lax' },
      ]);
      const page = await subscribe(
        h,
        [
          [selector, 'urn:e2e:private'],
          [selector, END],
        ],
        { withCredentials: true },
      );
      await publish(h, [['topic', 'urn:e2e:private'], ['data', 'for your eyes'], ['private', 'on']]);
      await publish(h, [['topic', 'urn:e2e:private'], ['data', 'for all']]);
      await publish(h, [['topic', END], ['data', 'end']]);
      expect((await untilEnd(page)).map((e) => e.data)).toEqual(['for your eyes', 'for all']);
      await page.close();
      // Without the cookie the same subscription is refused (no anonymous subscribers here).
      await browser.context.clearCookies();
      const refused = await browser.newPage();
      await refused.goto(`${pages.url}/mercure-subscriber`);
      const status = await refused.evaluate(
        async (url) => (await fetch(url, { credentials: 'include' })).status,
        `${h.url}/.well-known/mercure?${new URLSearchParams([[selector, 'urn:e2e:private']])}`,
      );
      expect(status).toBe(401);
      await refused.close();
    });
  }

  for (const [generation, selector] of [
    ['0.x', 'topic'],
    ['1.0', 'match'],
  ] as const) {
    it(`${generation}: after the hub drops the stream, Last-Event-ID resumes it: nothing lost, nothing twice`, async () => {
      const h = await hub(['--mercure-anonymous']);
      const page = await subscribe(h, [
        [selector, 'urn:e2e:tick'],
        [selector, END],
      ]);
      // Ids with non-ASCII characters (an IRI): Chromium sends them back in UTF-8.
      const tickId = (n: number) => `https://example.com/ticks/été/${n}`;
      const tick = (n: number) => publish(h, [['topic', 'urn:e2e:tick'], ['data', `${n}`], ['id', tickId(n)]]);
      for (let n = 1; n <= 3; n++) await tick(n);
      await page.waitForFunction(() => (window as any).__m.events.length >= 3, undefined, { timeout: 10_000 });
      const cut = await fetch(`${h.url}/api/sse/disconnect-all`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      expect(cut.status).toBe(200);
      // Published while the browser waits its retry delay: only a resume can bring them.
      for (let n = 4; n <= 6; n++) await tick(n);
      expect((await state(page)).opens, 'published before the reconnection').toBe(1);
      await page.waitForFunction(() => (window as any).__m.opens >= 2, undefined, { timeout: 15_000 });
      for (let n = 7; n <= 8; n++) await tick(n);
      await publish(h, [['topic', END], ['data', 'end']]);
      const seen = await untilEnd(page);
      expect(seen.map((e) => e.data)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
      expect(seen.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map(tickId));
      expect((await state(page)).opens).toBe(2);
      await page.close();
    });
  }
});
