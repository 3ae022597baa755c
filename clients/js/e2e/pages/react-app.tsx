/**
 * Test page for the React hook `useSSE` (bundled from dist/browser/, the browser build, with React by the e2e setup).
 * Configured by its query: ?hub=http://127.0.0.1:8080&userId=alice
 * Rendered in StrictMode, so the hook's mount/unmount/mount is exercised too.
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { useSSE } from '../../dist/browser/react.js';

const q = new URLSearchParams(location.search);
const hub = q.get('hub') ?? '';
const userId = q.get('userId') ?? 'anonymous';

function App() {
  // No names listed: the client asks for envelope=1, so every event arrives (order_update too).
  const { status, connectionId, events, error } = useSSE({ url: hub, userId, username: userId, maxEvents: 500 });
  return (
    <main data-testid="app" data-status={status} data-connection-id={connectionId ?? ''}>
      <h1>
        {userId}: {status}
      </h1>
      {error ? <p data-testid="error">{error}</p> : null}
      <ul>
        {events.map((e, i) => (
          <li key={e.id ?? `${e.event}-${i}`} data-testid="event" data-event={e.event} data-id={e.id ?? ''}>
            {JSON.stringify(e.data)}
          </li>
        ))}
      </ul>
    </main>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
