/**
 * The minimal EventSource surface the client uses, and how a constructor is found:
 * an injected one (`EventSource` option), else the global one (browsers, Deno,
 * Node >= 22 with the flag), else the `eventsource` npm package, imported lazily
 * so browser users never load it (and the browser build does not contain it).
 */
import { importEventSourcePackage } from './eventsource-package.js';

export interface EventSourceMessageLike {
  readonly type: string;
  readonly data?: unknown;
  readonly lastEventId?: string;
  /** HTTP status on error events (the `eventsource` npm package sets it). */
  readonly code?: number;
  readonly message?: string;
}

export interface EventSourceLike {
  readonly readyState: number;
  readonly url: string;
  addEventListener(type: string, listener: (event: EventSourceMessageLike) => void): void;
  removeEventListener(type: string, listener: (event: EventSourceMessageLike) => void): void;
  close(): void;
}

export type EventSourceConstructor = new (url: string, init?: Record<string, unknown>) => EventSourceLike;

/** The global EventSource constructor, if there is one. */
export function getGlobalEventSource(): EventSourceConstructor | undefined {
  const ctor = (globalThis as { EventSource?: unknown }).EventSource;
  return typeof ctor === 'function' ? (ctor as EventSourceConstructor) : undefined;
}

let loading: Promise<EventSourceConstructor> | undefined;

/** Lazily import the `eventsource` npm package (Node). Cached. */
export function loadEventSourcePackage(): Promise<EventSourceConstructor> {
  loading ??= importEventSourcePackage().then(
    (mod) => mod.EventSource as unknown as EventSourceConstructor,
    (err: unknown) => {
      loading = undefined;
      throw new Error(
        'No global EventSource and the "eventsource" package could not be loaded; pass the `EventSource` option.',
        { cause: err },
      );
    },
  );
  return loading;
}
