'use client';

import { useState } from 'react';
import { useSSE } from '@herald/client/react';

// The events this page receives, and their data (what the route handler publishes).
type Events = {
  notification: { title: string; message: string; type: string };
};

// Inlined at build time. The hub must allow this app's origin: --cors-origins http://localhost:3000
const HERALD_URL = process.env.NEXT_PUBLIC_HERALD_URL ?? 'http://127.0.0.1:8080';

export function Notifications({ userId }: { userId: string }) {
  // One connection per browser, shared by every tab of this app (tab sharing is on by default),
  // with reconnects, resume (lastEventId) and liveness handled by the client.
  const { status, events, error } = useSSE<Events>({
    url: HERALD_URL,
    userId,
    events: ['notification'],
    maxEvents: 20,
  });
  const [title, setTitle] = useState('Hello from Next.js');
  const [answer, setAnswer] = useState('');

  async function send() {
    const res = await fetch('/api/notify', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId, title, body: `sent at ${new Date().toLocaleTimeString()}` }),
    });
    setAnswer(`${res.status} ${await res.text()}`);
  }

  return (
    <section>
      <p>
        Listening as <b>{userId}</b>: <span data-testid="status">{status}</span>
        {error && status !== 'open' ? <small> ({error})</small> : null}
      </p>
      <p>
        <input value={title} onChange={(e) => setTitle(e.target.value)} aria-label="title" />{' '}
        <button onClick={send}>Notify me</button> <code data-testid="answer">{answer}</code>
      </p>
      <ul data-testid="notifications">
        {events
          .slice()
          .reverse()
          .map((e, i) =>
            e.event === 'notification' ? (
              <li key={e.id ?? i}>
                <b>{e.data.title}</b> {e.data.message}
              </li>
            ) : (
              <li key={e.id ?? i}>
                <i>{e.event}</i>
              </li>
            ),
          )}
      </ul>
    </section>
  );
}
