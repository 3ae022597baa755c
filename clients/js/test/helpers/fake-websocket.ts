/**
 * A fake WebSocket with the WHATWG surface the client uses: listeners, readyState, close(); the
 * test drives the server side (open, frames, an abrupt close, a refused handshake the way npm `ws`
 * reports it). No dispatch after close(). Each createFakeWebSocket() gives its own instance list.
 */
import type { WebSocketConstructor, WebSocketEventLike } from '../../src/websocket.js';

type Listener = (ev: WebSocketEventLike) => void;

export interface FakeWebSocketInstance {
  readonly url: string;
  readonly options?: Record<string, unknown> | undefined;
  readyState: number;
  /** The code the client closed with, once it did. */
  closedWith: number | undefined;
  readonly closed: boolean;
  addEventListener(type: string, l: Listener): void;
  removeEventListener(type: string, l: Listener): void;
  close(code?: number): void;
  /** The handshake succeeded. */
  open(): void;
  /** A text frame: an object is JSON-encoded, a string sent as is. */
  frame(frame: unknown): void;
  /** The server (or the network) closed the socket. */
  serverClose(code?: number): void;
  /** An `error` event (with npm ws's message, e.g. `Unexpected server response: 403`), then `close`. */
  fail(message?: string): void;
  listenerCount(type: string): number;
  readonly query: URLSearchParams;
}

export type FakeWebSocketClass = WebSocketConstructor & {
  instances: FakeWebSocketInstance[];
  readonly last: FakeWebSocketInstance | undefined;
};

export function createFakeWebSocket(): FakeWebSocketClass {
  class FakeWebSocket implements FakeWebSocketInstance {
    static instances: FakeWebSocketInstance[] = [];
    static get last() {
      return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
    }

    readyState = 0;
    closedWith: number | undefined;
    private readonly listeners = new Map<string, Set<Listener>>();

    constructor(
      readonly url: string,
      _protocols?: string | string[],
      readonly options?: Record<string, unknown>,
    ) {
      FakeWebSocket.instances.push(this);
    }

    get closed(): boolean {
      return this.readyState === 3;
    }

    get query(): URLSearchParams {
      return new URL(this.url).searchParams;
    }

    addEventListener(type: string, l: Listener): void {
      let set = this.listeners.get(type);
      if (!set) this.listeners.set(type, (set = new Set()));
      set.add(l);
    }

    removeEventListener(type: string, l: Listener): void {
      this.listeners.get(type)?.delete(l);
    }

    listenerCount(type: string): number {
      return this.listeners.get(type)?.size ?? 0;
    }

    close(code?: number): void {
      if (this.closed) return;
      this.closedWith = code ?? 1005;
      this.readyState = 3;
      this.dispatch({ type: 'close', code: this.closedWith });
    }

    open(): void {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.dispatch({ type: 'open' });
    }

    frame(frame: unknown): void {
      if (this.readyState !== 1) return;
      this.dispatch({ type: 'message', data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }

    serverClose(code = 1006): void {
      if (this.closed) return;
      this.readyState = 3;
      this.dispatch({ type: 'close', code });
    }

    fail(message?: string): void {
      if (this.closed) return;
      this.dispatch(message ? { type: 'error', message } : { type: 'error' });
      this.serverClose(1006);
    }

    private dispatch(ev: WebSocketEventLike): void {
      for (const l of [...(this.listeners.get(ev.type ?? '') ?? [])]) l(ev);
    }
  }
  return FakeWebSocket as unknown as FakeWebSocketClass;
}
