/**
 * Starting and stopping the real herald binary, and talking to it over HTTP from Node.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { heraldBin } from '../paths.js';

/** A free loopback port: bind port 0, read it, close. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (!addr || typeof addr === 'string') return reject(new Error('no port'));
      srv.close(() => resolve(addr.port));
    });
  });
}

export interface HeraldProcess {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly proc: ChildProcess;
  /** Everything the process printed so far (for failure messages). */
  logs(): string;
  /** Send `signal` and wait for the exit (SIGKILL after `timeoutMs`). Resolves the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  readonly exited: boolean;
}

export interface StartOptions {
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Extra flags, e.g. `['--cors-origins', 'http://127.0.0.1:5000']`. */
  args?: string[];
  /** How long to wait for "herald listening". */
  timeoutMs?: number;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: never leave a hub behind when the worker exits (teardown should have stopped it).
  process.on('exit', () => {
    for (const p of running) {
      try {
        p.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

/** The environment for the hub: ours, minus any HERALD_* / SSE_* setting that would change it. */
function hubEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('HERALD_') || k.startsWith('SSE_') || k === 'RUST_LOG') continue;
    env[k] = v;
  }
  env.HERALD_LOG = 'info';
  env.NO_COLOR = '1';
  return env;
}

/**
 * Start herald with `--listen 127.0.0.1:<port>` and resolve once it logs that it is listening.
 * Rejects (with its output) when it exits first or does not come up in time.
 */
export async function startHerald(options: StartOptions = {}): Promise<HeraldProcess> {
  installExitHook();
  const port = options.port ?? (await freePort());
  const args = ['--listen', `127.0.0.1:${port}`, ...(options.args ?? [])];
  const proc = spawn(heraldBin(), args, { stdio: ['ignore', 'pipe', 'pipe'], env: hubEnv() });
  running.add(proc);
  let output = '';
  let exited = false;
  const exit = new Promise<number | null>((resolve) => {
    proc.once('exit', (code, signal) => {
      exited = true;
      running.delete(proc);
      output += `\n[herald exited: code ${code}, signal ${signal}]\n`;
      resolve(code);
    });
  });
  const timeoutMs = options.timeoutMs ?? 15_000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`herald did not start within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/herald listening on http:\/\/127\.0\.0\.1:\d+/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${heraldBin()}: ${err.message}`));
    });
    void exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`herald exited before listening (args: ${args.join(' ')}):\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    logs: () => output,
    get exited() {
      return exited;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeout = 15_000) {
      if (exited) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeout);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Stop every hub given (ignoring ones already stopped). */
export async function stopAll(...hubs: (HeraldProcess | undefined)[]): Promise<void> {
  await Promise.all(hubs.map((h) => h?.stop('SIGTERM', 10_000)));
}

export interface HttpAnswer<T = unknown> {
  status: number;
  body: T;
}

async function request<T>(method: string, url: string, body?: unknown, key?: string): Promise<HttpAnswer<T>> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed as T };
}

export const getJson = <T = any>(url: string, key?: string) => request<T>('GET', url, undefined, key); // eslint-disable-line @typescript-eslint/no-explicit-any
export const postJson = <T = any>(url: string, body: unknown, key?: string) => request<T>('POST', url, body, key); // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Stats {
  connections: number;
  users: number;
  anonymousConnections: number;
  channels: Record<string, number>;
  eventsPublished: number;
  eventsDelivered: number;
  evictedSlowConsumers: number;
}

export async function stats(hub: HeraldProcess, key?: string): Promise<Stats> {
  const r = await getJson<Stats>(`${hub.url}/api/sse/stats`, key);
  if (r.status !== 200) throw new Error(`stats: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Connection ids of a user, from `GET /api/sse/presence/users/{id}`. */
export async function userConnections(hub: HeraldProcess, user: string, key?: string): Promise<string[]> {
  const r = await getJson<{ connections: { connectionId: string }[] }>(
    `${hub.url}/api/sse/presence/users/${encodeURIComponent(user)}`,
    key,
  );
  if (r.status !== 200) throw new Error(`presence: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.connections.map((c) => c.connectionId);
}

/**
 * Wait until `check` returns a truthy value (re-checked every `intervalMs`), or fail after
 * `timeoutMs` with `what` and the last value seen. For conditions on the hub's side (stats,
 * presence) that have no event to await.
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  { timeoutMs = 10_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
