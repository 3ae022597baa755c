import { describe, expect, it } from 'vitest';
import { Backoff, backoffCeiling, computeBackoff, DEFAULT_BACKOFF, resolveBackoffOptions } from '../src/backoff.js';

const noJitter = resolveBackoffOptions({ initialDelay: 100, maxDelay: 1000, multiplier: 2, jitter: 0 });

describe('backoff', () => {
  it('grows exponentially', () => {
    expect([0, 1, 2, 3].map((a) => computeBackoff(a, noJitter))).toEqual([100, 200, 400, 800]);
  });

  it('is capped at maxDelay', () => {
    expect(computeBackoff(4, noJitter)).toBe(1000);
    expect(computeBackoff(50, noJitter)).toBe(1000);
    expect(computeBackoff(1e9, noJitter)).toBe(1000); // no Infinity / NaN
    expect(backoffCeiling(10_000, resolveBackoffOptions({ initialDelay: 1, maxDelay: 5, multiplier: 10 }))).toBe(5);
  });

  it('uses a custom multiplier', () => {
    const o = resolveBackoffOptions({ initialDelay: 10, maxDelay: 10_000, multiplier: 3, jitter: 0 });
    expect([0, 1, 2].map((a) => computeBackoff(a, o))).toEqual([10, 30, 90]);
  });

  it('full jitter stays within [0, ceiling]', () => {
    const o = resolveBackoffOptions({ initialDelay: 100, maxDelay: 1000, jitter: 1 });
    for (let attempt = 0; attempt < 8; attempt++) {
      const ceiling = backoffCeiling(attempt, o);
      for (let i = 0; i < 200; i++) {
        const d = computeBackoff(attempt, o);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(ceiling);
      }
    }
    expect(computeBackoff(2, o, () => 0)).toBe(400);
    expect(computeBackoff(2, o, () => 0.999999)).toBe(0);
    expect(computeBackoff(2, o, () => 0.5)).toBe(200);
  });

  it('partial jitter keeps the lower bound', () => {
    const o = resolveBackoffOptions({ initialDelay: 1000, maxDelay: 1000, jitter: 0.25 });
    for (let i = 0; i < 200; i++) {
      const d = computeBackoff(0, o);
      expect(d).toBeGreaterThanOrEqual(750);
      expect(d).toBeLessThanOrEqual(1000);
    }
  });

  it('Backoff counts attempts and resets', () => {
    const b = new Backoff({ initialDelay: 100, maxDelay: 1000, jitter: 0 });
    expect([b.next(), b.next(), b.next()]).toEqual([100, 200, 400]);
    expect(b.attempt).toBe(3);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(100);
  });

  it('defaults and clamping', () => {
    expect(resolveBackoffOptions()).toEqual(DEFAULT_BACKOFF);
    expect(DEFAULT_BACKOFF).toEqual({ initialDelay: 1000, maxDelay: 30_000, multiplier: 2, jitter: 1 });
    expect(resolveBackoffOptions({ initialDelay: 500, maxDelay: 100, multiplier: 0.5, jitter: 7 })).toEqual({
      initialDelay: 500,
      maxDelay: 500,
      multiplier: 1,
      jitter: 1,
    });
    expect(resolveBackoffOptions({ initialDelay: -5, jitter: -1, multiplier: Number.NaN })).toMatchObject({
      initialDelay: 0,
      jitter: 0,
      multiplier: 2,
    });
  });
});
