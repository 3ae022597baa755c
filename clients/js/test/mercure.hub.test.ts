/**
 * Herald as a Mercure hub (`--mercure`), against the real binary: subscribers written the way
 * the Mercure documentation's JavaScript example subscribes (npm `eventsource`, `topic`
 * parameters, `onmessage`), one with its token in a header through a fetch-based client, and a
 * publisher that posts the form Symfony's Mercure component posts. Every wait is bounded.
 */
import { createHmac } from 'node:crypto';
import { EventSource } from 'eventsource';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireHeraldBin, startHerald, within, type HeraldProcess } from './helpers/hub.js';

const SECRET = '!ChangeThisMercureHubJWTSecretKey!';

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 JWT with these claims (and this `typ`). */
function jwt(claims: object, typ = 'JWT'): string {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64url(sig)}`;
}

let hub: HeraldProcess | undefined;
const sources = new Set<EventSource>();

beforeAll(() => requireHeraldBin());

afterEach(async () => {
  for (const s of sources) s.close();
  sources.clear();
  await hub?.stop();
  hub = undefined;
});

async function start(): Promise<HeraldProcess> {
  hub = await startHerald({
    args: [
      '--mercure',
      '--mercure-anonymous',
      '--mercure-publisher-jwt-key',
      SECRET,
      '--mercure-subscriber-jwt-key',
      SECRET,
    ],
  });
  return hub;
}

/** Publishes as Symfony's Mercure component does; resolves the update's id. */
async function publish(base: string, fields: [string, string][]): Promise<string> {
  const body = new URLSearchParams(fields).toString();
  const res = await within(
    10_000,
    'the publish answer',
    fetch(`${base}/.well-known/mercure`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${jwt({ mercure: { publish: ['*'] } })}`,
        'Content-Type': 'application/x-www-form-urlencoded',
      },
      body,
    }),
  );
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return text.trim();
}

interface Seen {
  id: string;
  data: string;
}

/** The Mercure documentation's subscriber, collecting `message` events; resolves once open. */
async function subscribe(url: URL, init?: ConstructorParameters<typeof EventSource>[1]): Promise<Seen[]> {
  const eventSource = new EventSource(url, init);
  sources.add(eventSource);
  const seen: Seen[] = [];
  eventSource.onmessage = (e) => seen.push({ id: e.lastEventId, data: e.data as string });
  await within(
    10_000,
    'the stream to open',
    new Promise<void>((resolve, reject) => {
      eventSource.onopen = () => resolve();
      eventSource.onerror = (e) => reject(new Error(`EventSource error: ${String((e as { message?: string }).message)}`));
    }),
  );
  return seen;
}

async function until(seen: Seen[], data: string): Promise<void> {
  await within(
    10_000,
    `an event with data ${data}`,
    new Promise<void>((resolve) => {
      const check = () => (seen.some((e) => e.data === data) ? resolve() : setTimeout(check, 10));
      check();
    }),
  );
}

describe('Herald as a Mercure hub', () => {
  it('serves the documentation example subscriber: templates, ids, multi-line data', async () => {
    const { url: base } = await start();
    const url = new URL(`${base}/.well-known/mercure`);
    url.searchParams.append('topic', 'https://example.com/books/{id}');
    url.searchParams.append('topic', 'urn:end');
    const seen = await subscribe(url);
    const id = await publish(base, [
      ['topic', 'https://example.com/books/1'],
      ['data', '{"status":"OutOfStock"}\n\nsecond line'],
      ['id', 'https://example.com/updates/1'],
    ]);
    expect(id).toBe('https://example.com/updates/1');
    await publish(base, [['topic', 'https://example.com/authors/1'], ['data', 'not for it']]);
    await publish(base, [['topic', 'urn:end'], ['data', 'end']]);
    await until(seen, 'end');
    expect(seen).toEqual([
      { id: 'https://example.com/updates/1', data: '{"status":"OutOfStock"}\n\nsecond line' },
      { id: expect.stringMatching(/^urn:uuid:/) as unknown as string, data: 'end' },
    ]);
  });

  it('gives private updates to a subscriber whose header token allows them, not to an anonymous one', async () => {
    const { url: base } = await start();
    const url = new URL(`${base}/.well-known/mercure`);
    url.searchParams.append('topic', 'https://example.com/users/1/inbox');
    url.searchParams.append('topic', 'urn:end');
    const token = jwt({ mercure: { subscribe: ['https://example.com/users/1/{box}'] } });
    // A fetch-based client: EventSource cannot set headers, its `fetch` option can.
    const authorized = await subscribe(url, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...(init?.headers ?? {}), Authorization: `Bearer ${token}` } }),
    });
    const anonymous = await subscribe(url);
    await publish(base, [['topic', 'https://example.com/users/1/inbox'], ['data', 'secret'], ['private', 'on']]);
    await publish(base, [['topic', 'urn:end'], ['data', 'end']]);
    await until(authorized, 'end');
    await until(anonymous, 'end');
    expect(authorized.map((e) => e.data)).toEqual(['secret', 'end']);
    expect(anonymous.map((e) => e.data)).toEqual(['end']);
  });

  it('Mercure 1.0: match_urlpattern, an at+jwt access token in a header, last_event_id', async () => {
    const { url: base } = await start();
    await publish(base, [['topic', 'https://example.com/users/1/inbox'], ['data', 'before'], ['id', 'urn:m:1']]);
    const url = new URL(`${base}/.well-known/mercure`);
    url.searchParams.append('match_urlpattern', 'https://example.com/users/:id/inbox');
    url.searchParams.append('match', 'urn:end');
    url.searchParams.append('last_event_id', 'earliest');
    // The default resource identifier: the hub's URL as this request reaches it.
    const token = jwt(
      {
        aud: `${base}/.well-known/mercure`,
        exp: Math.floor(Date.now() / 1000) + 600,
        authorization_details: [
          {
            type: 'https://mercure.rocks/authorization-detail',
            actions: ['subscribe'],
            topics: [{ match_urlpattern: 'https://example.com/users/1/:box' }],
          },
        ],
      },
      'at+jwt',
    );
    let lastEventIdHeader: string | null = null;
    const authorized = await subscribe(url, {
      fetch: async (input, init) => {
        const res = await fetch(input, { ...init, headers: { ...(init?.headers ?? {}), Authorization: `Bearer ${token}` } });
        lastEventIdHeader = res.headers.get('mercure-last-event-id');
        return res;
      },
    });
    const anonymous = await subscribe(url);
    await publish(base, [['topic', 'https://example.com/users/1/inbox'], ['data', 'secret'], ['private', 'on']]);
    await publish(base, [['topic', 'https://example.com/users/2/inbox'], ['data', 'public']]);
    await publish(base, [['topic', 'urn:end'], ['data', 'end']]);
    await until(authorized, 'end');
    await until(anonymous, 'end');
    expect(lastEventIdHeader).toBe('earliest');
    expect(authorized.map((e) => e.data)).toEqual(['before', 'secret', 'public', 'end']);
    expect(anonymous.map((e) => e.data)).toEqual(['before', 'public', 'end']);
    expect(authorized[0]?.id).toBe('urn:m:1');
  });

  it('replays after lastEventID, and from earliest', async () => {
    const { url: base } = await start();
    for (const n of [1, 2, 3]) {
      await publish(base, [['topic', 'urn:r'], ['data', `u${n}`], ['id', `r${n}`]]);
    }
    const url = (last: string) => {
      const u = new URL(`${base}/.well-known/mercure`);
      u.searchParams.append('topic', 'urn:r');
      u.searchParams.append('topic', 'urn:end');
      u.searchParams.append('lastEventID', last);
      return u;
    };
    const after = await subscribe(url('r1'));
    const earliest = await subscribe(url('earliest'));
    await publish(base, [['topic', 'urn:end'], ['data', 'end']]);
    await until(after, 'end');
    await until(earliest, 'end');
    expect(after.map((e) => e.data)).toEqual(['u2', 'u3', 'end']);
    expect(earliest.map((e) => e.data)).toEqual(['u1', 'u2', 'u3', 'end']);
    expect(after.map((e) => e.id).slice(0, 2)).toEqual(['r2', 'r3']);
  });
});
