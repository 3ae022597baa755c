/**
 * Test page for Herald's Socket.IO endpoint with the browser build of npm socket.io-client (the
 * package an existing Socket.IO app already ships). Configured by its query:
 *   ?hub=http://127.0.0.1:8080&userId=dave&transports=websocket (or polling, or polling,websocket)
 * `auth` is a function, as docs/guides/socket-io.md advises, so every (re)connection sends the
 * last event id seen. It records what the socket gets in `window.__sio` for the tests to read.
 */
import { io } from 'socket.io-client';

interface Received {
  event: string;
  id: string | undefined;
  data: unknown;
}

interface PageState {
  events: Received[];
  connects: number;
  disconnects: string[];
  errors: string[];
  lastEventId: string | undefined;
  transport: string | undefined;
}

const q = new URLSearchParams(location.search);
const state: PageState = { events: [], connects: 0, disconnects: [], errors: [], lastEventId: undefined, transport: undefined };
(window as unknown as { __sio: PageState }).__sio = state;

const socket = io(q.get('hub') ?? '', {
  transports: (q.get('transports') ?? 'websocket').split(',') as ('websocket' | 'polling')[],
  auth: (cb) =>
    cb(state.lastEventId === undefined ? { userId: q.get('userId') } : { userId: q.get('userId'), lastEventId: state.lastEventId }),
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
});
socket.onAny((event: string, data: unknown, id?: string) => {
  if (event === 'connected') {
    state.connects += 1;
    state.transport = socket.io.engine.transport.name;
  } else if (id !== undefined) {
    state.lastEventId = id;
  }
  state.events.push({ event, id, data });
});
socket.on('disconnect', (reason) => state.disconnects.push(reason));
socket.on('connect_error', (e) => state.errors.push(e.message));
