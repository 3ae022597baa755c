import { describe, expect, it } from 'vitest';
import { SseParser, unwrapEnvelope } from '../src/sse-parser.js';

function all(chunks: string[]) {
  const p = new SseParser();
  return chunks.flatMap((c) => p.push(c));
}

describe('SseParser', () => {
  it('parses events, ids (sticky), types and multi-line data', () => {
    const out = all(['id: 1\nevent: a\ndata: x\n\n', 'data: l1\ndata: l2\n\n', 'event: b\nid: 2\ndata:no-space\n\n']);
    expect(out).toEqual([
      { type: 'a', data: 'x', lastEventId: '1', hasOwnId: true },
      { type: 'message', data: 'l1\nl2', lastEventId: '1', hasOwnId: false },
      { type: 'b', data: 'no-space', lastEventId: '2', hasOwnId: true },
    ]);
  });

  it('gives the same events whatever the chunking, with CRLF, CR and LF', () => {
    const stream = '\ufeff: comment\r\nretry: 3000\r\nid: 7\r\nevent: e\r\ndata:  two spaces\r\ndata\r\n\r\ndata: cr\r\r: x\nevent: ignored-no-data\n\ndata: end\n\n';
    const whole = all([stream]);
    expect(whole).toEqual([
      { type: 'e', data: ' two spaces\n', lastEventId: '7', hasOwnId: true },
      { type: 'message', data: 'cr', lastEventId: '7', hasOwnId: false },
      { type: 'message', data: 'end', lastEventId: '7', hasOwnId: false },
    ]);
    for (let size = 1; size <= 7; size++) {
      const chunks: string[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.slice(i, i + size));
      expect(all(chunks), `chunks of ${size}`).toEqual(whole);
    }
    const p = new SseParser();
    p.push(stream);
    expect(p.retry).toBe(3000);
  });

  it('ignores ids with NUL and unterminated events', () => {
    expect(all(['id: a\0b\ndata: x\n\ndata: never dispatched'])).toEqual([{ type: 'message', data: 'x', lastEventId: '', hasOwnId: false }]);
  });
});

describe('unwrapEnvelope', () => {
  it('reads {id?, event, data} and nothing else', () => {
    expect(unwrapEnvelope('{"id":"1","event":"n","data":{"a":1}}')).toEqual({ id: '1', event: 'n', data: { a: 1 } });
    expect(unwrapEnvelope('{"event":"heartbeat","data":{"ts":1}}')).toEqual({ id: undefined, event: 'heartbeat', data: { ts: 1 } });
    expect(unwrapEnvelope('{"event":"t","data":"text"}')).toEqual({ id: undefined, event: 't', data: 'text' });
    for (const raw of ['', 'x', '[1]', '{"event":1,"data":1}', '{"event":"n"}', '{"event":"n","data":1,"extra":1}', '{"id":5,"event":"n","data":1}', '{bad']) {
      expect(unwrapEnvelope(raw), raw).toBeUndefined();
    }
  });
});
