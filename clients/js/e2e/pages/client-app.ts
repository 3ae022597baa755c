/**
 * Test page for HeraldClient (bundled from dist/browser/, the browser build, by the e2e setup). Configured by its query:
 *   ?hub=http://127.0.0.1:8080&userId=dave&share=1&backoff={"initialDelay":100}&events=tick,notification
 *   &transport=websocket&path=/api/sse (both optional)
 *   &token=<jwt> (sent by the fetch reader as `Authorization: Bearer`) &star=1 (record every event
 *   through `on('*')` instead of the `events` names) &reader=eventsource
 * It records what the client delivers in `window.__herald` for the tests to read, and renders it.
 */
import { HeraldClient } from '../../dist/browser/index.js';

interface Received {
  event: string;
  id: string | undefined;
  data: unknown;
}

interface PageState {
  events: Received[];
  connected: string[];
  disconnected: unknown[];
  resets: unknown[];
  status: string;
  role: string;
  connectionId: string | undefined;
  lastEventId: string | undefined;
  transport: string | undefined;
  /** Every connection error: its class name, status and hub code. */
  errors: { name: string; kind: string; status: number | undefined; code: string | undefined; message: string }[];
  closeReason: string | undefined;
}

const q = new URLSearchParams(location.search);
const names = (q.get('events') ?? 'tick,notification').split(',').filter(Boolean);
const state: PageState = {
  events: [],
  connected: [],
  disconnected: [],
  resets: [],
  status: 'connecting',
  role: 'none',
  connectionId: undefined,
  lastEventId: undefined,
  transport: undefined,
  errors: [],
  closeReason: undefined,
};
(window as unknown as { __herald: PageState }).__herald = state;

const client = new HeraldClient({
  url: q.get('hub') ?? '',
  userId: q.get('userId') ?? undefined,
  channels: q.get('channels') ?? undefined,
  shareConnection: q.has('share') ? q.get('share') === '1' : undefined,
  backoff: q.get('backoff') ? JSON.parse(q.get('backoff')!) : undefined,
  events: names,
  transport: (q.get('transport') as 'sse' | 'websocket' | 'auto' | null) ?? undefined,
  path: q.get('path') ?? undefined,
  token: q.get('token') ?? undefined,
  sseReader: (q.get('reader') as 'fetch' | 'eventsource' | null) ?? undefined,
});
client.onError((e) => {
  const err = e as Error & { kind?: string; status?: number; code?: string };
  state.errors.push({ name: err.name, kind: err.kind ?? '', status: err.status, code: err.code, message: err.message });
});
(window as unknown as { __client: HeraldClient }).__client = client;

const root = document.getElementById('root')!;
root.innerHTML = '<p>status <b id="status"></b> role <b id="role"></b> connection <code id="cid"></code></p><ol id="events"></ol>';
const render = () => {
  document.body.dataset.status = state.status;
  document.body.dataset.role = state.role;
  document.getElementById('status')!.textContent = state.status;
  document.getElementById('role')!.textContent = state.role;
  document.getElementById('cid')!.textContent = state.connectionId ?? '';
};

const record = (name: string, data: unknown, ev: { id: string | undefined }) => {
  state.events.push({ event: name, id: ev.id, data });
  state.lastEventId = client.lastEventId;
  const li = document.createElement('li');
  li.dataset.testid = 'event';
  li.textContent = `${name} ${ev.id ?? ''} ${JSON.stringify(data)}`;
  document.getElementById('events')!.appendChild(li);
};
if (q.get('star') === '1') {
  client.on('*', (data, ev) => {
    if (ev.event !== 'connected' && ev.event !== 'heartbeat') record(ev.event, data, ev);
  });
}
for (const name of q.get('star') === '1' ? [] : names) {
  client.on(name, (data: unknown, ev) => {
    state.events.push({ event: name, id: ev.id, data });
    state.lastEventId = client.lastEventId;
    const li = document.createElement('li');
    li.dataset.testid = 'event';
    li.textContent = `${name} ${ev.id ?? ''} ${JSON.stringify(data)}`;
    document.getElementById('events')!.appendChild(li);
  });
}
client.on('connected', (d) => state.connected.push(d.connectionId));
client.on('disconnected', (d) => state.disconnected.push(d));
client.on('reset', (d) => state.resets.push(d));
client.onStateChange((s) => {
  state.status = s.status;
  state.role = s.role;
  state.connectionId = s.connectionId;
  state.transport = s.transport;
  state.closeReason = s.closeReason;
  render();
});
state.status = client.status;
state.role = client.role;
state.transport = client.activeTransport;
render();
