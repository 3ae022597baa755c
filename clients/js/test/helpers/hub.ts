/**
 * For tests against the real hub from Node: the herald binary (e2e/helpers/herald.ts), a real
 * redis-server, a real SSE subscriber (npm `eventsource`), and a fetch wrapper that records
 * every attempt the publisher makes. Every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { EventSource } from 'eventsource';
import { heraldBin } from '../../e2e/paths.js';
import { freePort } from '../../e2e/helpers/herald.js';

export { freePort, startHerald, waitUntil, type HeraldProcess } from '../../e2e/helpers/herald.js';

/** Fails with a clear message when the herald binary is missing (these tests never skip). */
export function requireHeraldBin(): void {
  const bin = heraldBin();
  if (!existsSync(bin)) {
    throw new Error(
      `The herald binary is missing: ${bin} does not exist. Build it with \`cargo build -p herald\` ` +
        'from the repository root, or point HERALD_BIN at one.',
    );
  }
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------ redis-server

export interface Redis {
  readonly port: number;
  readonly url: string;
  /** SIGKILL and wait for the exit (bounded). */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: Redis stops answering but keeps its sockets. */
  pause(): void;
  resume(): void;
}

const redisProcs = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of redisProcs) p.kill('SIGKILL');
});

/** Starts `redis-server` (no persistence) on `port` (default a free one); resolves once ready. */
export async function startRedis(port?: number): Promise<Redis> {
  const p = port ?? (await freePort());
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  redisProcs.add(proc);
  let output = '';
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      redisProcs.delete(proc);
      resolve();
    }),
  );
  await within(
    10_000,
    `redis-server on port ${p} to be ready`,
    new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer) => {
        output += c.toString();
        if (output.includes('Ready to accept connections')) resolve();
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('error', (e) => reject(new Error(`cannot run redis-server: ${e.message}`)));
      void exited.then(() => reject(new Error(`redis-server exited before it was ready:\n${output}`)));
    }),
  ).catch((e) => {
    proc.kill('SIGKILL');
    throw e;
  });
  return {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
      await within(10_000, 'redis-server to exit', exited);
    },
    pause: () => void proc.kill('SIGSTOP'),
    resume: () => void proc.kill('SIGCONT'),
  };
}

// ------------------------------------------------------------------ subscriber

export interface Received {
  event: string;
  id: string | undefined;
  data: unknown;
}

export interface Subscriber {
  readonly events: Received[];
  /** Events named `name`. */
  named(name: string): Received[];
  /** Resolves the first event (already received or future) matching `pred`, within `ms`. */
  waitFor(what: string, pred: (e: Received) => boolean, ms?: number): Promise<Received>;
  close(): void;
}

const WATCHED = ['connected', 'disconnected', 'reset', 'tick', 'end', 'message'];

/** Opens a real SSE stream (`GET /api/sse?<query>`) and resolves once `connected` arrived. */
export async function subscribe(base: string, query: string, ms = 10_000): Promise<Subscriber> {
  const es = new EventSource(`${base}/api/sse?${query}`);
  const events: Received[] = [];
  const waiters = new Set<{ pred: (e: Received) => boolean; resolve: (e: Received) => void }>();
  for (const name of WATCHED) {
    es.addEventListener(name, (m: MessageEvent) => {
      let data: unknown = m.data;
      try {
        data = JSON.parse(m.data as string);
      } catch {
        /* text */
      }
      const e: Received = { event: name, id: m.lastEventId || undefined, data };
      events.push(e);
      for (const w of [...waiters]) {
        if (w.pred(e)) {
          waiters.delete(w);
          w.resolve(e);
        }
      }
    });
  }
  const sub: Subscriber = {
    events,
    named: (name) => events.filter((e) => e.event === name),
    waitFor(what, pred, timeout = 10_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      let w!: { pred: (e: Received) => boolean; resolve: (e: Received) => void };
      const p = new Promise<Received>((resolve) => {
        w = { pred, resolve };
        waiters.add(w);
      });
      return within(timeout, `${what} (received: ${JSON.stringify(events.map((e) => e.event))})`, p).finally(() =>
        waiters.delete(w),
      );
    },
    close: () => es.close(),
  };
  try {
    await sub.waitFor('the connected event', (e) => e.event === 'connected', ms);
  } catch (e) {
    es.close();
    throw e;
  }
  return sub;
}

// ------------------------------------------------------------------ recording fetch

export interface Attempt {
  /** HTTP status, or 0 when fetch rejected. */
  status: number;
  /** `error.code` of a JSON error body, or the rejection's `cause.code`. */
  code: string | undefined;
  headers: Record<string, string>;
  body: unknown;
}

export interface Recorder {
  readonly fetch: typeof fetch;
  readonly attempts: Attempt[];
  /** Request headers of each attempt, in order. */
  readonly sent: Record<string, string>[];
  /** Request bodies of each attempt (parsed JSON). */
  readonly sentBodies: unknown[];
  /** Resolves once `n` attempts have been started. */
  started(n: number, ms?: number): Promise<void>;
  /** Resolves once `n` attempts have finished (answered or failed). */
  finished(n: number, ms?: number): Promise<void>;
}

/**
 * A fetch that records what the publisher sent and what came back, attempt by attempt.
 * `transformBody`, when given, replaces the request body (e.g. with a stream held back).
 */
export function recorder(transform?: (init: RequestInit) => RequestInit): Recorder {
  const attempts: Attempt[] = [];
  const sent: Record<string, string>[] = [];
  const sentBodies: unknown[] = [];
  let startedCount = 0;
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  const waitCount = (what: string, get: () => number, n: number, ms: number) =>
    within(
      ms,
      `${n} ${what} attempts (so far ${get()})`,
      new Promise<void>((resolve) => {
        const check = () => {
          if (get() >= n) {
            listeners.delete(check);
            resolve();
          }
        };
        listeners.add(check);
        check();
      }),
    );
  const f: typeof fetch = async (input, init = {}) => {
    sent.push({ ...(init.headers as Record<string, string>) });
    sentBodies.push(typeof init.body === 'string' ? JSON.parse(init.body) : init.body);
    startedCount++;
    notify();
    try {
      const res = await fetch(input, transform ? transform(init) : init);
      const text = await res.clone().text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* text */
      }
      const code = (body as { error?: { code?: string } } | undefined)?.error?.code;
      attempts.push({ status: res.status, code, headers: Object.fromEntries(res.headers), body });
      notify();
      return res;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      attempts.push({ status: 0, code: cause?.code ?? (err as Error).name, headers: {}, body: undefined });
      notify();
      throw err;
    }
  };
  return {
    fetch: f,
    attempts,
    sent,
    sentBodies,
    started: (n, ms = 15_000) => waitCount('started', () => startedCount, n, ms),
    finished: (n, ms = 15_000) => waitCount('finished', () => attempts.length, n, ms),
  };
}
