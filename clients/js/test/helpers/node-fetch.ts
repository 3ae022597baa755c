/**
 * A minimal `fetch` over `node:http`, for hook tests under happy-dom: happy-dom replaces the
 * global `fetch` with its own, whose abort does not close a streaming response's connection
 * (the hub keeps a strict-mode client's first stream open). Only what the fetch reader uses:
 * `ok`, `status`, `headers.get`, `body` (a web ReadableStream) and `text()`; the abort signal
 * destroys the request.
 */
import { request } from 'node:http';
import { Readable } from 'node:stream';

export function nodeFetch(input: string, init: RequestInit = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const signal = init.signal ?? undefined;
    if (signal?.aborted) return reject(signal.reason);
    const req = request(input, { method: init.method ?? 'GET', headers: init.headers as Record<string, string> }, (res) => {
      const headers = { get: (name: string) => {
        const v = res.headers[name.toLowerCase()];
        return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
      } };
      const status = res.statusCode ?? 0;
      const body = Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
      resolve({
        ok: status >= 200 && status < 300,
        status,
        headers,
        body,
        text: async () => {
          let text = '';
          const decoder = new TextDecoder();
          for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) text += decoder.decode(chunk, { stream: true });
          return text;
        },
      } as unknown as Response);
    });
    signal?.addEventListener('abort', () => req.destroy(new Error('aborted')), { once: true });
    req.on('error', reject);
    req.end();
  });
}
