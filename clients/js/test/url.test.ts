import { describe, expect, it } from 'vitest';
import { buildSubscribeUrl, joinUrl, normalizeChannels } from '../src/url.js';

describe('buildSubscribeUrl', () => {
  it('appends /api/sse to the base', () => {
    expect(buildSubscribeUrl('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080/api/sse');
    expect(buildSubscribeUrl('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080/api/sse');
    expect(buildSubscribeUrl('https://x.example/herald/')).toBe('https://x.example/herald/api/sse');
  });

  it('does not double the path when the base already ends with it', () => {
    expect(buildSubscribeUrl('http://h/api/sse')).toBe('http://h/api/sse');
    expect(buildSubscribeUrl('http://h/api/sse/')).toBe('http://h/api/sse');
  });

  it('works with relative bases', () => {
    expect(buildSubscribeUrl('')).toBe('/api/sse');
    expect(buildSubscribeUrl('/prefix', { userId: 'a' })).toBe('/prefix/api/sse?userId=a');
  });

  it('adds the known params in a stable order', () => {
    const url = buildSubscribeUrl('http://h', {
      token: 'tok',
      lastEventId: 'abc-42',
      channels: ['orders', 'news'],
      username: 'Alice',
      userId: 'alice',
    });
    expect(url).toBe('http://h/api/sse?userId=alice&username=Alice&channels=orders,news&lastEventId=abc-42&token=tok');
  });

  it('omits empty values', () => {
    expect(buildSubscribeUrl('http://h', { userId: '', username: undefined, channels: [], lastEventId: null, token: '' })).toBe(
      'http://h/api/sse',
    );
  });

  it('normalises channels (comma string, trim, de-dup)', () => {
    expect(buildSubscribeUrl('http://h', { channels: ' orders, news,,orders ' })).toBe('http://h/api/sse?channels=orders,news');
    expect(buildSubscribeUrl('http://h', { channels: ['a,b', 'c', 'a'] })).toBe('http://h/api/sse?channels=a,b,c');
  });

  it('percent-encodes values', () => {
    const url = buildSubscribeUrl('http://h', {
      userId: 'a b&c=d',
      username: 'Zoë + ☃',
      channels: ['x/y', 'q?'],
      lastEventId: 'id#1',
      token: 'e30.e30.sig+/=',
    });
    expect(url).toBe(
      'http://h/api/sse?userId=a%20b%26c%3Dd&username=Zo%C3%AB%20%2B%20%E2%98%83&channels=x%2Fy,q%3F&lastEventId=id%231&token=e30.e30.sig%2B%2F%3D',
    );
    const q = new URL(url).searchParams;
    expect(q.get('userId')).toBe('a b&c=d');
    expect(q.get('username')).toBe('Zoë + ☃');
    expect(q.get('channels')!.split(',')).toEqual(['x/y', 'q?']);
    expect(q.get('lastEventId')).toBe('id#1');
    expect(q.get('token')).toBe('e30.e30.sig+/=');
  });

  it('keeps an existing query string and adds extra params', () => {
    expect(buildSubscribeUrl('http://h/?x=1#frag', { userId: 'u', params: { debug: true, n: 2, skip: undefined } })).toBe(
      'http://h/api/sse?x=1&userId=u&debug=true&n=2',
    );
  });

  it('supports a custom path', () => {
    expect(buildSubscribeUrl('http://h', {}, '/events')).toBe('http://h/events');
  });
});

describe('helpers', () => {
  it('normalizeChannels', () => {
    expect(normalizeChannels(undefined)).toEqual([]);
    expect(normalizeChannels('')).toEqual([]);
    expect(normalizeChannels('a')).toEqual(['a']);
    expect(normalizeChannels(['b', ' a ', 'b'])).toEqual(['b', 'a']);
  });

  it('joinUrl', () => {
    expect(joinUrl('http://h/base?k=v', '/api/sse/message')).toEqual({ url: 'http://h/base/api/sse/message', query: 'k=v' });
  });
});
