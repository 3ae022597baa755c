import { describe, expect, it } from 'vitest';
import { decideOnDisconnected, decideOnHttpStatus, reconnectAdvice } from '../src/policy.js';

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

  it('follows the hub\'s reconnect advice when there is one, whatever the reason', () => {
    for (const reason of ['server_shutdown', 'token_expired', 'unauthorized', 'new_reason']) {
      expect(decideOnDisconnected({ reason, reconnect: 'now' }, staticToken)).toBe('reconnect');
      expect(decideOnDisconnected({ reason, reconnect: 'backoff' }, staticToken)).toBe('reconnect');
      expect(decideOnDisconnected({ reason, reconnect: 'no' }, refreshable)).toBe('stop');
      expect(decideOnDisconnected({ reason, reconnect: 'new_token' }, staticToken)).toBe('stop');
      expect(decideOnDisconnected({ reason, reconnect: 'new_token' }, refreshable)).toBe('reconnect');
      expect(decideOnDisconnected({ reason, reconnect: 'someday' }, staticToken)).toBe('reconnect');
    }
  });

  it('reads the advice, or derives it from the reason of a hub that sends none', () => {
    expect(reconnectAdvice({ reason: 'timeout', reconnect: 'now' })).toBe('now');
    expect(reconnectAdvice({ reason: 'timeout', reconnect: 'new_token' })).toBe('new_token');
    expect(reconnectAdvice({ reason: 'timeout', reconnect: 'unheard_of' })).toBe('backoff');
    expect(reconnectAdvice({ reason: 'timeout' })).toBe('backoff');
    expect(reconnectAdvice({ reason: 'token_revoked' })).toBe('new_token');
    expect(reconnectAdvice({ reason: 'forbidden' })).toBe('no');
    expect(reconnectAdvice(undefined)).toBe('backoff');
  });

  it('HTTP statuses', () => {
    expect(decideOnHttpStatus(401, staticToken)).toBe('stop');
    expect(decideOnHttpStatus(403, staticToken)).toBe('stop');
    expect(decideOnHttpStatus(401, refreshable)).toBe('reconnect');
    expect(decideOnHttpStatus(400, refreshable)).toBe('stop');
    for (const s of [404, 429, 500, 502, 503]) expect(decideOnHttpStatus(s, staticToken)).toBe('reconnect');
  });
});
