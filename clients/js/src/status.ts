/**
 * The connection status machine. Pure logic.
 *
 *   connecting --open--> open --drop--> reconnecting --open--> open ...
 *        |                 |                 |
 *        +-----drop--------|-------------> reconnecting
 *        +------------ close (any state) ----------> closed (terminal)
 *
 * `closed` is terminal: nothing leaves it. `retry` (a reconnect attempt
 * starting) keeps `reconnecting`/`connecting` as they are.
 */
import type { ConnectionStatus } from './types.js';

export type StatusInput = 'open' | 'drop' | 'retry' | 'close';

export function nextStatus(current: ConnectionStatus, input: StatusInput): ConnectionStatus {
  if (current === 'closed') return 'closed';
  switch (input) {
    case 'close':
      return 'closed';
    case 'open':
      return 'open';
    case 'drop':
      return 'reconnecting';
    case 'retry':
      return current === 'open' ? 'reconnecting' : current;
  }
}

/** Small holder that applies inputs and reports whether the status changed. */
export class StatusMachine {
  private value: ConnectionStatus;

  constructor(initial: ConnectionStatus = 'connecting') {
    this.value = initial;
  }

  get status(): ConnectionStatus {
    return this.value;
  }

  /** Apply an input; returns the previous status when it changed, otherwise `undefined`. */
  apply(input: StatusInput): ConnectionStatus | undefined {
    const prev = this.value;
    const next = nextStatus(prev, input);
    if (next === prev) return undefined;
    this.value = next;
    return prev;
  }
}
