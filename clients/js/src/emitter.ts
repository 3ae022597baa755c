/** Minimal listener registry used by the client. Listener exceptions never break dispatch. */

export type Listener<A extends unknown[]> = (...args: A) => void;

/** Report an exception thrown by a user listener without interrupting dispatch. */
export function reportListenerError(err: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === 'function') {
    g.reportError(err);
  } else {
    // eslint-disable-next-line no-console
    console.error('[herald] listener threw:', err);
  }
}

export class ListenerSet<A extends unknown[]> {
  private readonly listeners = new Set<Listener<A>>();

  get size(): number {
    return this.listeners.size;
  }

  add(listener: Listener<A>): () => void {
    this.listeners.add(listener);
    return () => this.delete(listener);
  }

  delete(listener: Listener<A>): void {
    this.listeners.delete(listener);
  }

  emit(...args: A): void {
    for (const l of [...this.listeners]) {
      try {
        l(...args);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}

/** Named listener sets. */
export class Emitter<A extends unknown[]> {
  private readonly map = new Map<string, ListenerSet<A>>();

  on(name: string, listener: Listener<A>): () => void {
    let set = this.map.get(name);
    if (!set) {
      set = new ListenerSet<A>();
      this.map.set(name, set);
    }
    return set.add(listener);
  }

  off(name: string, listener: Listener<A>): void {
    const set = this.map.get(name);
    if (!set) return;
    set.delete(listener);
    if (set.size === 0) this.map.delete(name);
  }

  emit(name: string, ...args: A): void {
    this.map.get(name)?.emit(...args);
  }

  has(name: string): boolean {
    return (this.map.get(name)?.size ?? 0) > 0;
  }

  names(): string[] {
    return [...this.map.keys()];
  }

  clear(): void {
    this.map.clear();
  }
}
