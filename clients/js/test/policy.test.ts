import { describe, expect, it } from 'vitest';
import { decideOnDisconnected, decideOnHttpStatus } from '../src/policy.js';

const staticToken = { canRefreshToken: false };
const refreshable = { canRefreshToken: true };

describe('reconnect policy', () => {
  it.each(['server_shutdown', 'server_disconnect', 'timeout', 'slow_consumer', 'something_new', ''])(
    'reconnects on %j',
    (reason) => {
      expect(decideOnDisconnected({ reason }, staticToken)).toBe('reconnect');
    },
  );

  it('stops on token reasons unless the token can be refreshed', () => {
    for (const reason of ['token_expired', 'token_invalid', 'token_revoked']) {
      expect(decideOnDisconnected({ reason }, staticToken)).toBe('stop');
      expect(decideOnDisconnected({ reason }, refreshable)).toBe('reconnect');
    }
  });

  it('always stops on unauthorized / forbidden', () => {
    expect(decideOnDisconnected({ reason: 'unauthorized' }, refreshable)).toBe('stop');
    expect(decideOnDisconnected({ reason: 'forbidden' }, staticToken)).toBe('stop');
  });

  it('treats a missing payload as reconnect', () => {
    expect(decideOnDisconnected(undefined, staticToken)).toBe('reconnect');
  });

  it('HTTP statuses', () => {
    expect(decideOnHttpStatus(401, staticToken)).toBe('stop');
    expect(decideOnHttpStatus(403, staticToken)).toBe('stop');
    expect(decideOnHttpStatus(401, refreshable)).toBe('reconnect');
    expect(decideOnHttpStatus(400, refreshable)).toBe('stop');
    for (const s of [404, 429, 500, 502, 503]) expect(decideOnHttpStatus(s, staticToken)).toBe('reconnect');
  });
});
