// An Express backend that tells browsers about business events through Herald.
//
//   herald --cors-origins http://localhost:3000,http://127.0.0.1:3000   # the hub, on :8080
//   npm install && node server.js                                      # this app, on :3000
//
// Open http://localhost:3000, or use curl (see README.md). The app never holds an SSE connection
// itself: browsers connect to Herald, and this backend publishes with HeraldPublisher whenever
// something happens (an order is placed, shipped, a maintenance is announced).
//
// Settings (environment): HOST (127.0.0.1), PORT (3000), HERALD_URL (http://127.0.0.1:8080), HERALD_PUBLISHER_KEY
// (when the hub has one), HERALD_PUBLIC_URL (the hub's URL as browsers reach it; HERALD_URL).

import express from 'express';
import { HeraldError, HeraldPublisher } from '@herald/client/publisher';

const PORT = Number(process.env.PORT ?? 3000);
const HERALD_URL = process.env.HERALD_URL ?? 'http://127.0.0.1:8080';
const HERALD_PUBLIC_URL = process.env.HERALD_PUBLIC_URL ?? HERALD_URL;

// One publisher for the whole process. Timeouts are short: a notification must never hold up a
// business request for long. Retries cover 429/502/503 and connection errors only (never a
// timeout, which could deliver an event twice).
const herald = new HeraldPublisher({
  url: HERALD_URL,
  key: process.env.HERALD_PUBLISHER_KEY || undefined,
  timeoutMs: 3000,
  retries: 2,
});

/**
 * Publish without failing the business operation: the order is saved whether or not Herald is
 * reachable. Returns the number of connections reached, or null when publishing failed.
 */
async function notify(what, publish) {
  try {
    const { id, delivered } = await publish();
    console.log(`herald: ${what} -> event ${id}, ${delivered} connection(s)`);
    return delivered;
  } catch (err) {
    if (err instanceof HeraldError) {
      // err.status is 0 when no answer came (network_error, timeout); err.code is the hub's code.
      console.warn(`herald: ${what} failed: ${err.status} ${err.code}: ${err.message}`);
      return null;
    }
    throw err;
  }
}

// ---------------------------------------------------------------- the "business"

const orders = new Map();
let nextOrder = 1;

const app = express();
app.use(express.json({ limit: '16kb' }));

app.get('/api/orders', (_req, res) => {
  res.json([...orders.values()]);
});

app.post('/api/orders', async (req, res) => {
  const { userId, item } = req.body ?? {};
  if (typeof userId !== 'string' || !userId || typeof item !== 'string' || !item) {
    return res.status(400).json({ error: 'userId and item are required strings' });
  }
  const order = { id: `o-${nextOrder++}`, userId, item, status: 'placed', placedAt: new Date().toISOString() };
  orders.set(order.id, order);

  // The customer: every tab they have open gets a notification.
  const delivered = await notify(`order ${order.id} placed`, () =>
    herald.sendNotification(userId, 'Order placed', `${item} (${order.id})`, 'info'),
  );
  if (delivered === 0) {
    // Nobody online for that user: this is where you would send an email or a push instead.
    console.log(`herald: ${userId} is offline; would fall back to email for ${order.id}`);
  }
  // The back office: everyone subscribed to the `orders` channel.
  await notify(`orders.created ${order.id}`, () =>
    herald.sendToChannel('orders', 'orders.created', { orderId: order.id, userId, item }),
  );
  res.status(201).json({ order, notified: delivered });
});

app.post('/api/orders/:id/ship', async (req, res) => {
  const order = orders.get(req.params.id);
  if (!order) return res.status(404).json({ error: `no order ${req.params.id}` });
  order.status = 'shipped';
  order.shippedAt = new Date().toISOString();
  // A state change for the page to apply (event `update`), and a human-readable notification.
  await notify(`order ${order.id} update`, () =>
    herald.sendUpdate(order.userId, 'order', { id: order.id, status: order.status }),
  );
  const delivered = await notify(`order ${order.id} shipped`, () =>
    herald.sendNotification(order.userId, 'Order shipped', `${order.item} is on its way`, 'success'),
  );
  res.json({ order, notified: delivered });
});

app.post('/api/maintenance', async (req, res) => {
  const message = typeof req.body?.message === 'string' ? req.body.message : 'Maintenance in 5 minutes';
  // Every connection of every user.
  const delivered = await notify('maintenance', () => herald.notifyAll(message, 'alert', { severity: 'warning' }));
  res.json({ notified: delivered });
});

app.get('/api/herald/stats', async (_req, res) => {
  try {
    res.json(await herald.getStats());
  } catch (err) {
    if (!(err instanceof HeraldError)) throw err;
    res.status(502).json({ error: `herald: ${err.code}: ${err.message}` });
  }
});

// ---------------------------------------------------------------- a page to watch it happen

app.get('/', (_req, res) => {
  res.type('html').send(PAGE.replaceAll('__HERALD_URL__', JSON.stringify(HERALD_PUBLIC_URL)));
});

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald + Express</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 760px; margin: 2rem auto; padding: 0 1rem; }
  ol { padding-left: 1.2rem; } li { margin: .25rem 0; } code { background: #f3f3f3; padding: 0 .25rem; }
  button { margin-right: .5rem; }
</style></head>
<body>
<h1>Herald + Express</h1>
<p>User <input id="user" value="alice" size="10"> <button id="listen">Listen</button>
   status: <b id="status">closed</b></p>
<p><button id="order">Place an order</button><button id="ship">Ship the last order</button>
   <button id="maintenance">Announce maintenance</button></p>
<ol id="log"></ol>
<script type="module">
  const HERALD_URL = __HERALD_URL__;
  const $ = (id) => document.getElementById(id);
  const log = (text) => { const li = document.createElement('li'); li.textContent = text; $('log').prepend(li); };
  let es, lastOrder;

  $('listen').onclick = () => {
    es?.close();
    const user = $('user').value.trim();
    // The page talks to Herald directly (the hub allows this origin with --cors-origins).
    // envelope=1: every event arrives as one default message {id, event, data}, whatever its name.
    es = new EventSource(HERALD_URL + '/api/sse?userId=' + encodeURIComponent(user) + '&channels=orders&envelope=1');
    es.onopen = () => ($('status').textContent = 'open');
    es.onerror = () => ($('status').textContent = es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
    es.onmessage = (m) => {
      const { event, data } = JSON.parse(m.data);
      if (event !== 'heartbeat') log(event + ' ' + JSON.stringify(data));
    };
  };

  const post = async (path, body) => {
    const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
    return res.json();
  };
  $('order').onclick = async () => {
    const r = await post('/api/orders', { userId: $('user').value.trim(), item: 'Blue mug' });
    lastOrder = r.order?.id;
  };
  $('ship').onclick = () => lastOrder && post('/api/orders/' + lastOrder + '/ship');
  $('maintenance').onclick = () => post('/api/maintenance', { message: 'Back in 10 minutes' });
  $('listen').click();
</script>
</body></html>
`;

// Loopback only: this demo trusts ?userId= and has no authentication of its own. Set HOST to
// serve other machines once you have added real sign-in.
const HOST = process.env.HOST ?? '127.0.0.1';
const server = app.listen(PORT, HOST, () => {
  console.log(`express example on http://${HOST}:${PORT}, publishing to ${HERALD_URL}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
