// The publisher, shared by every route handler and server action. Server-only: it holds the
// publisher key. Never import this file from a 'use client' module.
import { HeraldPublisher } from '@herald/client/publisher';

export const herald = new HeraldPublisher({
  url: process.env.HERALD_URL ?? 'http://127.0.0.1:8080',
  key: process.env.HERALD_PUBLISHER_KEY || undefined,
  // A notification must not hold up a request for long; 429/502/503 and network errors are
  // retried, timeouts are not (a retry could deliver the event twice).
  timeoutMs: 3000,
  retries: 2,
});
