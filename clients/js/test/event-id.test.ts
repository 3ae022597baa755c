import { describe, expect, it } from 'vitest';
import { EventIdTracker } from '../src/event-id.js';

describe('EventIdTracker', () => {
  it('starts with the initial id', () => {
    expect(new EventIdTracker().current).toBeUndefined();
    expect(new EventIdTracker('').current).toBeUndefined();
    expect(new EventIdTracker('e-1').current).toBe('e-1');
  });

  it('tracks the last non-empty id', () => {
    const t = new EventIdTracker();
    expect(t.observe('3f9a1c2b7d4e-1')).toBe(true);
    expect(t.observe(undefined)).toBe(false);
    expect(t.observe('')).toBe(false);
    expect(t.observe(null)).toBe(false);
    expect(t.current).toBe('3f9a1c2b7d4e-1');
    expect(t.observe('3f9a1c2b7d4e-2')).toBe(true);
    expect(t.observe('3f9a1c2b7d4e-2')).toBe(false);
    expect(t.current).toBe('3f9a1c2b7d4e-2');
  });

  it('treats ids as opaque (no ordering)', () => {
    const t = new EventIdTracker();
    t.observe('b-9');
    t.observe('a-1');
    expect(t.current).toBe('a-1');
  });

  it('remembers a bounded window of ids', () => {
    const t = new EventIdTracker(undefined, 3);
    for (const id of ['a', 'b', 'c', 'd']) t.observe(id);
    expect(t.seen('a')).toBe(false);
    expect(t.seen('b')).toBe(true);
    expect(t.seen('d')).toBe(true);
    expect(t.seen(undefined)).toBe(false);
  });
});
