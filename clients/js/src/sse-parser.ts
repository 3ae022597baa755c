/**
 * A `text/event-stream` parser following the WHATWG algorithm ("Server-sent events",
 * "Interpreting an event stream"), fed with text chunks as they arrive. Pure logic, no I/O:
 * the fetch-based stream (`fetch-stream.ts`) decodes the body with a streaming `TextDecoder`
 * and feeds the text here.
 *
 * - Lines end with CRLF, CR or LF, also when a CRLF is split between two chunks.
 * - A leading BOM is skipped; comment lines (`:`) are ignored.
 * - `data:` lines are joined with `\n`; an event with no data is not dispatched.
 * - `id:` is sticky (the last event id carries over to later events without one) and an id
 *   containing NUL is ignored, as the spec says.
 * - The event type is `message` when there was no `event:` line.
 */
import type { StreamCallbacks } from './connection.js';

/** One dispatched event, as an EventSource would report it. */
export interface SseMessage {
  /** The event type (`message` when the stream gave none). */
  type: string;
  /** The data, lines joined with `\n`. */
  data: string;
  /** The last event id (sticky); `''` when none was ever set. */
  lastEventId: string;
  /** Whether this event itself carried an `id:` line. */
  hasOwnId: boolean;
}

/** Incremental parser: call {@link push} with each decoded chunk; it returns the events completed by it. */
export class SseParser {
  private buffer = '';
  private started = false;
  /** The previous chunk ended with CR: an LF at the start of the next one belongs to it. */
  private pendingCr = false;
  private type = '';
  private data: string[] = [];
  private ownId = false;
  /** Last event id (sticky). */
  lastEventId = '';
  /** The last valid `retry:` value, in ms. */
  retry: number | undefined;

  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    if (!this.started && text.length) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    const buf = this.buffer;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(buf.slice(start, i), out);
      if (c === 13) {
        if (i + 1 < buf.length) {
          if (buf.charCodeAt(i + 1) === 10) i++;
        } else {
          this.pendingCr = true;
        }
      }
      start = i + 1;
    }
    this.buffer = buf.slice(start);
    return out;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === '') return this.dispatch(out);
    if (line.charCodeAt(0) === 58 /* : */) return;
    const colon = line.indexOf(':');
    let field: string;
    let value: string;
    if (colon < 0) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value;
          this.ownId = true;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }

  private dispatch(out: SseMessage[]): void {
    const ownId = this.ownId;
    this.ownId = false;
    if (!this.data.length) {
      this.type = '';
      return;
    }
    out.push({ type: this.type || 'message', data: this.data.join('\n'), lastEventId: this.lastEventId, hasOwnId: ownId });
    this.type = '';
    this.data = [];
  }
}

/** An enveloped event (`GET /api/sse?envelope=1`): the data of a default `message`. */
export interface Envelope {
  event: string;
  data: unknown;
  id: string | undefined;
}

/**
 * Reads a `message`'s data as an envelope `{"id"?, "event", "data"}` (the hub's `envelope=1`
 * format, the WebSocket frame's shape), or `undefined` when it is not one.
 */
export function unwrapEnvelope(raw: string): Envelope | undefined {
  if (raw.charCodeAt(0) !== 123 /* { */) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.event !== 'string' || !('data' in o)) return undefined;
  for (const k of Object.keys(o)) if (k !== 'id' && k !== 'event' && k !== 'data') return undefined;
  if (o.id !== undefined && typeof o.id !== 'string') return undefined;
  return { event: o.event, data: o.data, id: o.id as string | undefined };
}

/** The `raw` string handlers see for an enveloped event: a text payload as it is, JSON re-encoded. */
export function envelopeRaw(data: unknown): string {
  return typeof data === 'string' ? data : JSON.stringify(data) ?? '';
}

/** Parse an SSE data field: JSON when possible, the raw string otherwise. */
export function parseData(raw: string): unknown {
  if (raw === '') return raw;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/**
 * Hands one SSE event to `cb`: with `envelope`, a default `message` whose data is an envelope
 * `{id, event, data}` is delivered as the event it wraps (its own id; text payloads as they
 * are); anything else (a hub older than `envelope=1`) as it came, its data parsed as JSON
 * when it is JSON.
 */
export function deliverSse(cb: StreamCallbacks, envelope: boolean, type: string, raw: string, lastEventId: string | undefined): void {
  if (envelope && type === 'message') {
    const env = unwrapEnvelope(raw);
    if (env) return cb.message(env.event, envelopeRaw(env.data), env.data, env.id);
  }
  cb.message(type, raw, parseData(raw), lastEventId);
}
