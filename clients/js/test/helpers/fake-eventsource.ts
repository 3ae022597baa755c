/**
 * A fake EventSource that behaves like the WHATWG one as far as the client can
 * tell: named listeners, a persistent lastEventId buffer, no dispatch after close().
 * Each call of createFakeEventSource() gives a class with its own instance list.
 */
import type { EventSourceConstructor, EventSourceMessageLike } from '../../src/eventsource.js';

type Listener = (ev: EventSourceMessageLike) => void;

export interface FakeEventSourceInstance {
  readonly url: string;
  readonly init?: Record<string, unknown> | undefined;
  readyState: number;
  closed: boolean;
  addEventListener(type: string, l: Listener): void;
  removeEventListener(type: string, l: Listener): void;
  close(): void;
  /** Fire `open`. */
  open(): void;
  /** Fire a message event; `data` objects are JSON-encoded; `id` updates the lastEventId buffer. */
  emit(type: string, data?: unknown, id?: string): void;
  /** Fire `error` (optionally with an HTTP `code`, like the eventsource package). */
  fail(code?: number): void;
  listenerCount(type: string): number;
  readonly query: URLSearchParams;
}

export type FakeEventSourceClass = EventSourceConstructor & {
  instances: FakeEventSourceInstance[];
  /** The most recent instance. */
  readonly last: FakeEventSourceInstance | undefined;
  /** Instances not closed. */
  readonly open: FakeEventSourceInstance[];
};

export function createFakeEventSource(): FakeEventSourceClass {
  class FakeEventSource implements FakeEventSourceInstance {
    static instances: FakeEventSourceInstance[] = [];
    static get last() {
      return FakeEventSource.instances[FakeEventSource.instances.length - 1];
    }
    static get open() {
      return FakeEventSource.instances.filter((i) => !i.closed);
    }

    readyState = 0;
    closed = false;
    private lastEventIdBuffer = '';
    private readonly listeners = new Map<string, Set<Listener>>();

    constructor(
      readonly url: string,
      readonly init?: Record<string, unknown>,
    ) {
      FakeEventSource.instances.push(this);
    }

    get query(): URLSearchParams {
      return new URL(this.url, 'http://fake.invalid').searchParams;
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

    close(): void {
      this.readyState = 2;
      this.closed = true;
    }

    open(): void {
      if (this.closed) return;
      this.readyState = 1;
      this.dispatch({ type: 'open' });
    }

    emit(type: string, data: unknown = '', id?: string): void {
      if (this.closed) return;
      if (id !== undefined) this.lastEventIdBuffer = id;
      const raw = typeof data === 'string' ? data : JSON.stringify(data);
      this.dispatch({ type, data: raw, lastEventId: this.lastEventIdBuffer });
    }

    fail(code?: number): void {
      if (this.closed) return;
      this.readyState = code ? 2 : 0;
      this.dispatch(code ? { type: 'error', code, message: `Non-200 status code (${code})` } : { type: 'error' });
    }

    private dispatch(ev: EventSourceMessageLike): void {
      for (const l of [...(this.listeners.get(ev.type) ?? [])]) l(ev);
    }
  }
  return FakeEventSource as unknown as FakeEventSourceClass;
}
