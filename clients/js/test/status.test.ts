import { describe, expect, it } from 'vitest';
import { nextStatus, StatusMachine, type StatusInput } from '../src/status.js';
import type { ConnectionStatus } from '../src/types.js';

describe('status machine', () => {
  const table: [ConnectionStatus, StatusInput, ConnectionStatus][] = [
    ['connecting', 'open', 'open'],
    ['connecting', 'drop', 'reconnecting'],
    ['connecting', 'retry', 'connecting'],
    ['connecting', 'close', 'closed'],
    ['open', 'open', 'open'],
    ['open', 'drop', 'reconnecting'],
    ['open', 'retry', 'reconnecting'],
    ['open', 'close', 'closed'],
    ['reconnecting', 'open', 'open'],
    ['reconnecting', 'drop', 'reconnecting'],
    ['reconnecting', 'retry', 'reconnecting'],
    ['reconnecting', 'close', 'closed'],
    ['closed', 'open', 'closed'],
    ['closed', 'drop', 'closed'],
    ['closed', 'retry', 'closed'],
    ['closed', 'close', 'closed'],
  ];
  it.each(table)('%s --%s--> %s', (from, input, to) => {
    expect(nextStatus(from, input)).toBe(to);
  });

  it('StatusMachine reports changes only', () => {
    const m = new StatusMachine();
    expect(m.status).toBe('connecting');
    expect(m.apply('open')).toBe('connecting');
    expect(m.apply('open')).toBeUndefined();
    expect(m.apply('drop')).toBe('open');
    expect(m.status).toBe('reconnecting');
    expect(m.apply('close')).toBe('reconnecting');
    expect(m.apply('open')).toBeUndefined();
    expect(m.status).toBe('closed');
  });
});
