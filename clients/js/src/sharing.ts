/**
 * Tab sharing: tabs of one origin with the same connection options share ONE
 * SSE connection.
 *
 * - Leader election uses the Web Locks API: every tab requests the lock named
 *   `<key>:leader`; the tab that gets it holds it for as long as it leads (the
 *   browser releases it when the tab dies or navigates away).
 * - The leader owns an {@link SseConnection} and re-broadcasts every event and
 *   state change on the BroadcastChannel `<key>:bus`.
 * - Followers mirror the leader's state and dispatch the broadcast events to
 *   their own handlers. They tell the leader which event names they listen to
 *   (EventSource only delivers named events that have a listener).
 * - When the leader dies, the next tab in the lock queue becomes leader and
 *   connects with the last event id IT has seen, so the server replays the gap.
 * - When the leader's connection stops for good (e.g. `token_expired` with a
 *   static token) it broadcasts a terminal `closed` state and every tab stops,
 *   rather than handing the lock to a tab that would fail the same way.
 *
 * `key` derives from url/path/userId/username/channels/params so tabs with
 * different options never share. The token is deliberately NOT part of the key
 * (same-origin tabs are the same principal, and a refreshed token must not
 * split the group); pass `shareKey` to override.
 */
import type { Transport, TransportSink } from './connection.js';
import type { ClientState, HeraldEvent } from './types.js';
import { buildSubscribeUrl, normalizeChannels } from './url.js';

/** The subset of the Web Locks `LockManager` we use. */
export interface LockManagerLike {
  request(
    name: string,
    options: { signal?: AbortSignal; mode?: 'exclusive' | 'shared' },
    callback: (lock: unknown) => Promise<unknown> | unknown,
  ): Promise<unknown>;
}

export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  addEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
  removeEventListener(type: 'message', listener: (ev: { data: unknown }) => void): void;
}

export type BroadcastChannelConstructor = new (name: string) => BroadcastChannelLike;

export interface SharingSupport {
  locks: LockManagerLike;
  BroadcastChannel: BroadcastChannelConstructor;
}

/** Find Web Locks + BroadcastChannel (injected ones win). `undefined` when either is missing. */
export function detectSharingSupport(injected: {
  locks?: LockManagerLike | undefined;
  BroadcastChannel?: BroadcastChannelConstructor | undefined;
} = {}): SharingSupport | undefined {
  const g = globalThis as { navigator?: { locks?: LockManagerLike }; BroadcastChannel?: unknown };
  const locks = injected.locks ?? g.navigator?.locks;
  const BC = injected.BroadcastChannel ?? (typeof g.BroadcastChannel === 'function' ? (g.BroadcastChannel as BroadcastChannelConstructor) : undefined);
  if (!locks || typeof locks.request !== 'function' || typeof BC !== 'function') return undefined;
  return { locks, BroadcastChannel: BC };
}

/** Default of `shareConnection`: on in browser windows that support it, off elsewhere (Node, workers). */
export function defaultShareConnection(): boolean {
  const g = globalThis as { window?: unknown; document?: unknown };
  return typeof g.window !== 'undefined' && typeof g.document !== 'undefined' && !!detectSharingSupport();
}

/** FNV-1a 32-bit hash, hex. Not cryptographic: only used to name locks/channels. */
export function fnv1a(input: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < input.length; i++) {
    h ^= input.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export interface ShareKeyInput {
  url: string;
  path?: string | undefined;
  userId?: string | null | undefined;
  username?: string | null | undefined;
  channels?: string | readonly string[] | null | undefined;
  params?: Record<string, string | number | boolean | null | undefined> | undefined;
}

/**
 * Derive the sharing key from the options that change what the server sends.
 * Channel order and duplicates do not matter.
 */
export function deriveShareKey(input: ShareKeyInput): string {
  const channels = [...normalizeChannels(input.channels)].sort();
  const params = Object.entries(input.params ?? {})
    .filter(([, v]) => v != null)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const url = buildSubscribeUrl(input.url, {}, input.path);
  const canonical = JSON.stringify([url, input.userId ?? null, input.username ?? null, channels, params]);
  return `herald:${fnv1a(canonical)}${fnv1a('salt:' + canonical)}`;
}

// ------------------------------------------------------------------ protocol

/** Messages on the BroadcastChannel. `from` is the sender's random tab id. */
export type ShareMessage =
  | { v: 1; from: string; type: 'hello'; names: string[] } // follower -> leader: I exist, send state
  | { v: 1; from: string; type: 'listen'; names: string[] } // follower -> leader: also listen to these
  | { v: 1; from: string; type: 'reconnect' } // follower -> leader: please reconnect now
  | { v: 1; from: string; type: 'leader' } // new leader announces itself
  | { v: 1; from: string; type: 'resign' } // leader closes voluntarily; lock is about to be released
  | { v: 1; from: string; type: 'event'; event: HeraldEvent; lastEventId?: string | undefined } // leader -> all
  | { v: 1; from: string; type: 'state'; state: SharedState; terminal?: boolean }; // leader -> all

export interface SharedState {
  status?: ClientState['status'];
  connectionId?: string | undefined;
  closeReason?: string | undefined;
  error?: { name: string; message: string } | undefined;
  lastEventId?: string | undefined;
  transport?: ClientState['transport'];
}

function isShareMessage(x: unknown): x is ShareMessage {
  return !!x && typeof x === 'object' && (x as { v?: unknown }).v === 1 && typeof (x as { type?: unknown }).type === 'string';
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

export interface SharedTransportDeps {
  key: string;
  support: SharingSupport;
  /** Creates the real connection when this tab becomes leader. */
  createConnection(sink: TransportSink): Transport;
}

/**
 * Transport that is either the leader (owning a real connection) or a follower
 * (mirroring the leader over BroadcastChannel). Starts as follower until the
 * lock is granted.
 */
export class SharedTransport implements Transport {
  readonly tabId = randomId();
  private role: 'leader' | 'follower' = 'follower';
  private channel: BroadcastChannelLike | undefined;
  private connection: Transport | undefined;
  private readonly names = new Set<string>();
  private readonly abort = new AbortController();
  private releaseLock: (() => void) | undefined;
  private started = false;
  private closed = false;
  /** The last state this leader broadcast (for late joiners). */
  private leaderState: SharedState = {};
  /** Whether a leader was ever heard of (so taking over counts as a reconnect). */
  private sawLeader = false;
  private readonly onChannelMessage = (ev: { data: unknown }) => this.handleMessage(ev.data);

  constructor(
    private readonly deps: SharedTransportDeps,
    private readonly sink: TransportSink,
  ) {}

  /** Current role; `follower` includes "waiting for the lock". */
  get currentRole(): 'leader' | 'follower' {
    return this.role;
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    const { key, support } = this.deps;
    this.channel = new support.BroadcastChannel(`${key}:bus`);
    this.channel.addEventListener('message', this.onChannelMessage);
    this.sink.state({ role: 'follower' });
    this.post({ type: 'hello', names: [...this.names] });
    // If the lock manager itself fails (e.g. a sandboxed frame), lead without
    // the lock rather than never connecting: this tab then has its own connection.
    const lockFailed = () => {
      if (!this.closed && this.role !== 'leader') void this.lead();
    };
    try {
      support.locks.request(`${key}:leader`, { signal: this.abort.signal }, () => this.lead()).catch(() => {
        if (!this.abort.signal.aborted) lockFailed(); // otherwise: withdrawn by close()
      });
    } catch {
      lockFailed();
    }
  }

  listen(name: string): void {
    if (this.names.has(name)) return;
    this.names.add(name);
    if (this.role === 'leader') this.connection?.listen(name);
    else if (this.started) this.post({ type: 'listen', names: [name] });
  }

  reconnect(): void {
    if (this.closed) return;
    if (this.role === 'leader') this.connection?.reconnect();
    else this.post({ type: 'reconnect' });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.role === 'leader') {
      const conn = this.connection;
      this.connection = undefined;
      conn?.close();
      this.post({ type: 'resign' });
    }
    this.shutdown();
  }

  // ------------------------------------------------------------ leader side

  /** Lock callback: lead until the returned promise resolves. */
  private lead(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.role = 'leader';
    const held = new Promise<void>((resolve) => {
      this.releaseLock = resolve;
    });
    // Taking over from a previous leader is a reconnect; otherwise a first connect.
    const status = this.sawLeader ? 'reconnecting' : 'connecting';
    this.leaderState = { status, lastEventId: this.sink.lastEventId() };
    this.sink.state({ role: 'leader', status, connectionId: undefined });
    this.post({ type: 'leader' });
    this.post({ type: 'state', state: this.leaderState });

    // Forward while this connection is the current one; a connection being
    // closed voluntarily (close(), or a leader that learned of a terminal stop)
    // is detached first so its final `closed` is not broadcast as terminal.
    const current = () => this.connection === conn && !this.closed;
    const forward: TransportSink = {
      event: (event) => {
        if (!current()) return;
        // Post first: a local handler may close this tab (and the channel).
        this.post({ type: 'event', event, lastEventId: event.id ?? this.sink.lastEventId() });
        this.sink.event(event);
      },
      state: (patch) => {
        if (!current()) return;
        this.sink.state(patch);
        this.broadcastState(patch);
      },
      lastEventId: () => this.sink.lastEventId(),
      observeLastEventId: (id) => this.sink.observeLastEventId?.(id),
    };
    const conn: Transport = this.deps.createConnection(forward);
    this.connection = conn;
    for (const n of this.names) conn.listen(n);
    conn.start();
    return held;
  }

  private broadcastState(patch: Partial<ClientState>): void {
    const s: SharedState = { ...this.leaderState };
    if ('status' in patch) s.status = patch.status;
    if ('connectionId' in patch) s.connectionId = patch.connectionId;
    if ('closeReason' in patch) s.closeReason = patch.closeReason;
    if ('transport' in patch) s.transport = patch.transport;
    if ('error' in patch) s.error = patch.error ? { name: patch.error.name, message: patch.error.message } : undefined;
    s.lastEventId = this.sink.lastEventId();
    this.leaderState = s;
    const terminal = patch.status === 'closed';
    this.post({ type: 'state', state: s, ...(terminal ? { terminal: true } : {}) });
    // The connection stopped on its own (policy said "don't come back"): every
    // tab stops with it; do not hand the lock to a tab that would fail alike.
    if (terminal) {
      this.closed = true;
      this.connection = undefined;
      this.shutdown();
    }
  }

  // ---------------------------------------------------------- message bus

  private handleMessage(data: unknown): void {
    if (this.closed || !isShareMessage(data) || data.from === this.tabId) return;
    if (this.role === 'leader') {
      switch (data.type) {
        case 'hello':
        case 'listen':
          for (const n of data.names) {
            this.names.add(n);
            this.connection?.listen(n);
          }
          if (data.type === 'hello') this.post({ type: 'state', state: { ...this.leaderState, lastEventId: this.sink.lastEventId() } });
          return;
        case 'reconnect':
          this.connection?.reconnect();
          return;
        case 'state':
          // The previous leader stopped for good, but the lock reached us before its
          // message did: stop as well instead of retrying what must fail.
          if (data.terminal) {
            const conn = this.connection;
            this.connection = undefined;
            this.closed = true;
            this.shutdown();
            this.sink.state({ status: 'closed', closeReason: data.state.closeReason ?? 'leader_closed', connectionId: undefined });
            conn?.close();
          }
          return;
        default:
          return; // other leaders' chatter cannot happen with Web Locks
      }
    }
    if (data.type === 'leader' || data.type === 'state' || data.type === 'event') this.sawLeader = true;
    switch (data.type) {
      case 'leader':
        // A (new) leader: tell it every name we need. Its state message follows.
        if (this.names.size) this.post({ type: 'listen', names: [...this.names] });
        return;
      case 'resign':
        this.sink.state({ status: 'reconnecting', connectionId: undefined });
        return;
      case 'event':
        this.sink.event(data.event);
        // After dispatch (the tracker de-duplicates on ids it has seen).
        this.sink.observeLastEventId?.(data.lastEventId);
        return;
      case 'state': {
        const s = data.state;
        const patch: Partial<ClientState> = {};
        if (s.status && s.status !== 'closed') patch.status = s.status;
        if ('connectionId' in s) patch.connectionId = s.connectionId;
        if (s.transport) patch.transport = s.transport;
        if (s.error) patch.error = Object.assign(new Error(s.error.message), { name: s.error.name });
        else if ('error' in s) patch.error = undefined;
        this.sink.observeLastEventId?.(s.lastEventId);
        if (data.terminal) {
          this.closed = true;
          this.shutdown();
          patch.status = 'closed';
          patch.closeReason = s.closeReason ?? 'leader_closed';
        }
        if (Object.keys(patch).length) this.sink.state(patch);
        return;
      }
      default:
        return;
    }
  }

  private post(msg: DistributiveOmit<ShareMessage, 'v' | 'from'>): void {
    if (!this.channel) return;
    try {
      this.channel.postMessage({ v: 1, from: this.tabId, ...msg });
    } catch {
      /* channel closed (e.g. page unloading) */
    }
  }

  private shutdown(): void {
    this.abort.abort();
    const release = this.releaseLock;
    this.releaseLock = undefined;
    release?.();
    const ch = this.channel;
    this.channel = undefined;
    if (ch) {
      ch.removeEventListener('message', this.onChannelMessage);
      try {
        ch.close();
      } catch {
        /* ignore */
      }
    }
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
