/**
 * Exponential backoff with (full) jitter. Pure logic, no timers.
 *
 *   base(attempt) = min(maxDelay, initialDelay * multiplier ^ attempt)
 *   delay         = base * (1 - jitter * random())          random() in [0, 1)
 *
 * `jitter = 1` is "full jitter" (delay uniformly in (0, base]), `jitter = 0`
 * disables randomisation, values in between shrink the random window.
 */

export interface BackoffOptions {
  /** Delay before the first retry, in ms. Default 1000. */
  initialDelay?: number;
  /** Upper bound of any delay, in ms. Default 30000. */
  maxDelay?: number;
  /** Growth factor per attempt. Default 2. */
  multiplier?: number;
  /** Jitter ratio in [0, 1]. Default 1 (full jitter). */
  jitter?: number;
}

export interface ResolvedBackoffOptions {
  initialDelay: number;
  maxDelay: number;
  multiplier: number;
  jitter: number;
}

export const DEFAULT_BACKOFF: ResolvedBackoffOptions = Object.freeze({
  initialDelay: 1000,
  maxDelay: 30_000,
  multiplier: 2,
  jitter: 1,
});

function finiteOr(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

/** Fill defaults and clamp nonsense values. */
export function resolveBackoffOptions(
  options: BackoffOptions = {},
  defaults: ResolvedBackoffOptions = DEFAULT_BACKOFF,
): ResolvedBackoffOptions {
  const initialDelay = Math.max(0, finiteOr(options.initialDelay, defaults.initialDelay));
  const maxDelay = Math.max(initialDelay, finiteOr(options.maxDelay, defaults.maxDelay));
  const multiplier = Math.max(1, finiteOr(options.multiplier, defaults.multiplier));
  const jitter = Math.min(1, Math.max(0, finiteOr(options.jitter, defaults.jitter)));
  return { initialDelay, maxDelay, multiplier, jitter };
}

/** The un-jittered delay ceiling for a 0-based attempt number. */
export function backoffCeiling(attempt: number, options: ResolvedBackoffOptions): number {
  const n = Math.max(0, Math.floor(attempt));
  // Avoid Infinity/NaN for large attempt numbers: stop multiplying once capped.
  let delay = options.initialDelay;
  for (let i = 0; i < n && delay < options.maxDelay; i++) delay *= options.multiplier;
  return Math.min(options.maxDelay, delay);
}

/** Delay (ms) for a 0-based attempt number, with jitter applied. */
export function computeBackoff(
  attempt: number,
  options: ResolvedBackoffOptions,
  random: () => number = Math.random,
): number {
  const ceiling = backoffCeiling(attempt, options);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling * (1 - options.jitter * r));
}

/** Stateful attempt counter around {@link computeBackoff}. */
export class Backoff {
  readonly options: ResolvedBackoffOptions;
  private attemptCount = 0;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.options = resolveBackoffOptions(options);
  }

  /** Number of delays handed out since the last reset. */
  get attempt(): number {
    return this.attemptCount;
  }

  /** Delay for the next attempt; increments the attempt counter. */
  next(): number {
    const delay = computeBackoff(this.attemptCount, this.options, this.random);
    this.attemptCount++;
    return delay;
  }

  /** Back to the initial delay (call after a successful connection). */
  reset(): void {
    this.attemptCount = 0;
  }
}
