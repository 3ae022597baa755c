/**
 * Building the subscribe URL: `GET {base}/api/sse?userId=..&username=..&channels=a,b&lastEventId=..&token=..`.
 * Pure logic.
 */

export const DEFAULT_SSE_PATH = '/api/sse';

export interface SubscribeUrlParams {
  userId?: string | null | undefined;
  username?: string | null | undefined;
  channels?: string | readonly string[] | null | undefined;
  lastEventId?: string | null | undefined;
  token?: string | null | undefined;
  /** Extra query parameters (added after the known ones). */
  params?: Record<string, string | number | boolean | null | undefined> | undefined;
}

/** Normalise channels: split commas, trim, drop empties, de-duplicate (order kept). */
export function normalizeChannels(channels: string | readonly string[] | null | undefined): string[] {
  if (channels == null) return [];
  const list = typeof channels === 'string' ? channels.split(',') : channels.flatMap((c) => String(c).split(','));
  const out: string[] = [];
  for (const raw of list) {
    const c = raw.trim();
    if (c && !out.includes(c)) out.push(c);
  }
  return out;
}

/**
 * Join a base URL and an endpoint path. A base that already ends with the
 * path (e.g. `https://x/api/sse`) is used as is. Query strings on the base are
 * kept. Works for absolute and relative (`''`, `/prefix`) bases.
 */
export function joinUrl(base: string, path: string): { url: string; query: string } {
  let rest = base.trim();
  let query = '';
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  rest = rest.replace(/\/+$/, '');
  const p = '/' + path.replace(/^\/+/, '');
  const url = rest.endsWith(p) ? rest : rest + p;
  return { url, query };
}

const enc = encodeURIComponent;

/** Build the subscribe URL. Values are percent-encoded (spaces as `%20`); channel commas stay literal. */
export function buildSubscribeUrl(base: string, params: SubscribeUrlParams = {}, path = DEFAULT_SSE_PATH): string {
  const { url, query } = joinUrl(base, path);
  const parts: string[] = query ? query.split('&').filter(Boolean) : [];
  const add = (key: string, value: string | null | undefined) => {
    if (value == null || value === '') return;
    parts.push(`${enc(key)}=${enc(value)}`);
  };
  add('userId', params.userId);
  add('username', params.username);
  const channels = normalizeChannels(params.channels);
  if (channels.length) parts.push(`channels=${channels.map(enc).join(',')}`);
  add('lastEventId', params.lastEventId);
  add('token', params.token);
  for (const [k, v] of Object.entries(params.params ?? {})) {
    if (v == null) continue;
    add(k, String(v));
  }
  return parts.length ? `${url}?${parts.join('&')}` : url;
}

/** `query` with the hub's `envelope=1` (every event as a default `message` carrying `{id, event, data}`). */
export function withEnvelope(query: SubscribeUrlParams): SubscribeUrlParams {
  return { ...query, params: { ...query.params, envelope: 1 } };
}
