/**
 * In-process Web Locks shim (exclusive locks only). `forTab(id)` gives a
 * LockManager view whose locks can be force-released with `killTab(id)`,
 * the way a browser releases the locks of a tab that died.
 */
import type { LockManagerLike } from '../../src/sharing.js';

interface Waiter {
  tab: string;
  name: string;
  cb: (lock: unknown) => Promise<unknown> | unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

function abortError(): Error {
  const e = new Error('The request was aborted');
  e.name = 'AbortError';
  return e;
}

export class FakeLockManager {
  private readonly held = new Map<string, Waiter>();
  private readonly queues = new Map<string, Waiter[]>();
  private readonly dead = new Set<string>();

  forTab(tab: string): LockManagerLike {
    return {
      request: (name, options, cb) => this.request(tab, name, options, cb),
    };
  }

  /** Which tab holds the lock `name`. */
  holder(name: string): string | undefined {
    return this.held.get(name)?.tab;
  }

  /** Names of held locks. */
  heldNames(): string[] {
    return [...this.held.keys()];
  }

  /** Number of waiters queued for `name`. */
  queued(name: string): number {
    return this.queues.get(name)?.length ?? 0;
  }

  /** Simulate a tab dying: its queued requests vanish and its locks are released. */
  killTab(tab: string): void {
    this.dead.add(tab);
    for (const [name, q] of this.queues) this.queues.set(name, q.filter((w) => w.tab !== tab));
    for (const [name, w] of [...this.held]) {
      if (w.tab === tab) {
        this.held.delete(name);
        this.pump(name);
      }
    }
  }

  private request(
    tab: string,
    name: string,
    options: { signal?: AbortSignal },
    cb: (lock: unknown) => Promise<unknown> | unknown,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.dead.has(tab)) return; // a dead tab's requests never settle
      const signal = options.signal;
      if (signal?.aborted) return reject(abortError());
      const waiter: Waiter = { tab, name, cb, resolve, reject };
      signal?.addEventListener(
        'abort',
        () => {
          const q = this.queues.get(name);
          const i = q ? q.indexOf(waiter) : -1;
          if (q && i >= 0) {
            q.splice(i, 1);
            reject(abortError());
          }
        },
        { once: true },
      );
      let q = this.queues.get(name);
      if (!q) this.queues.set(name, (q = []));
      q.push(waiter);
      this.pump(name);
    });
  }

  private pump(name: string): void {
    if (this.held.has(name)) return;
    const w = this.queues.get(name)?.shift();
    if (!w) return;
    this.held.set(name, w);
    // Grant asynchronously, like the real API.
    queueMicrotask(async () => {
      try {
        w.resolve(await w.cb({ name, mode: 'exclusive' }));
      } catch (e) {
        w.reject(e);
      } finally {
        if (this.held.get(name) === w) {
          this.held.delete(name);
          this.pump(name);
        }
      }
    });
  }
}
