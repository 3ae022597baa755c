/**
 * Tracking of the last event id (used to resume after reconnects) and
 * de-duplication of recently seen ids. Ids are opaque: only compared for equality.
 */

export class EventIdTracker {
  private last: string | undefined;
  private readonly recent = new Set<string>();

  constructor(initial?: string | null, private readonly window = 256) {
    if (initial) this.last = initial;
  }

  /** The last non-empty event id seen (or the initial one). */
  get current(): string | undefined {
    return this.last;
  }

  /** Record an id; empty/missing ids are ignored. Returns true when `current` changed. */
  observe(id: string | null | undefined): boolean {
    if (!id) return false;
    this.remember(id);
    if (id === this.last) return false;
    this.last = id;
    return true;
  }

  /** Whether this id was observed recently (bounded window). */
  seen(id: string | null | undefined): boolean {
    return !!id && this.recent.has(id);
  }

  private remember(id: string): void {
    if (this.recent.has(id)) return;
    this.recent.add(id);
    if (this.recent.size > this.window) {
      const oldest = this.recent.values().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
  }
}
