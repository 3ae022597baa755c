// A hand-written SSE notification hub on the npm package `better-sse`, the way teams write one
// in an Express / Next.js route: the benchmark peer of Herald in scripts/bench-compare.
//
// Herald-like paths, so that herald-bench drives it with `--target generic`:
//
//   GET  /api/sse?channels=a,b&userId=u     event stream; the session joins one better-sse
//                                           Channel per named channel and one per user, then
//                                           gets an event `connected`
//   POST /api/sse/message                   {"event","data","channels","users","broadcast"}
//                                           → 200 {"delivered": n}
//   GET  /api/sse/stats                     {"connections": n, "channels": n}
//
// Kept idiomatic and fair: better-sse's createSession / createChannel / Channel.broadcast, no
// artificial delays, no logging per request, keep-alive comments at better-sse's default
// interval. A session in several targeted channels gets an event once (like Herald).
//
//   node server.mjs [--host 127.0.0.1] [--port 3000]      (or HOST / PORT in the environment)

import http from "node:http";
import { createChannel, createSession } from "better-sse";

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[name.toUpperCase()] ?? fallback;
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "3000"));
const MAX_BODY = 64 * 1024;

/** Channel name → better-sse Channel. Per-user channels are named `user:<id>`. */
const channels = new Map();
/** Every connected session (broadcasts). */
const everyone = createChannel();
let nextEventId = 1;
let nextConnectionId = 1;

function channelFor(name) {
  let channel = channels.get(name);
  if (channel === undefined) {
    channel = createChannel();
    // Forget channels nobody listens to any more, or the map grows without bound.
    channel.on("session-deregistered", () => {
      if (channel.sessionCount === 0 && channels.get(name) === channel) channels.delete(name);
    });
    channels.set(name, channel);
  }
  return channel;
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

async function subscribe(req, res, url) {
  const userId = url.searchParams.get("userId") ?? "";
  const names = (url.searchParams.get("channels") ?? "")
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c.length > 0);
  const session = await createSession(req, res);
  everyone.register(session);
  for (const name of names) channelFor(name).register(session);
  if (userId !== "") channelFor(`user:${userId}`).register(session);
  session.push(
    { connectionId: String(nextConnectionId++), userId, channels: names },
    "connected",
    String(nextEventId++),
  );
}

function publish(req, res) {
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      sendJson(res, 413, { error: "payload_too_large" });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (res.headersSent) return;
    let message;
    try {
      message = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      sendJson(res, 400, { error: "invalid_json" });
      return;
    }
    if (message === null || typeof message !== "object" || typeof message.event !== "string") {
      sendJson(res, 400, { error: "invalid_message" });
      return;
    }
    const eventId = String(nextEventId++);
    const targets = [];
    if (message.broadcast === true) {
      targets.push(everyone);
    } else {
      for (const name of message.channels ?? []) {
        const channel = channels.get(String(name));
        if (channel !== undefined) targets.push(channel);
      }
      for (const user of message.users ?? []) {
        const channel = channels.get(`user:${user}`);
        if (channel !== undefined) targets.push(channel);
      }
    }
    let delivered = 0;
    if (targets.length === 1) {
      // The common case: one channel or one user, straight through better-sse's broadcast.
      const channel = targets[0];
      delivered = channel.sessionCount;
      channel.broadcast(message.data, message.event, { eventId });
    } else if (targets.length > 1) {
      // Several targets: a session in more than one of them gets the event once.
      const sessions = new Set();
      for (const channel of targets) for (const s of channel.activeSessions) sessions.add(s);
      for (const session of sessions) session.push(message.data, message.event, eventId);
      delivered = sessions.size;
    }
    sendJson(res, 200, { id: eventId, delivered });
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
  if (req.method === "GET" && url.pathname === "/api/sse") {
    subscribe(req, res, url).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { error: String(err) });
      else res.destroy();
    });
  } else if (req.method === "POST" && url.pathname === "/api/sse/message") {
    publish(req, res);
  } else if (req.method === "GET" && url.pathname === "/api/sse/stats") {
    sendJson(res, 200, { connections: everyone.sessionCount, channels: channels.size });
  } else {
    sendJson(res, 404, { error: "not_found" });
  }
});
// Event streams live for as long as the client wants; no request timeout on them.
server.requestTimeout = 0;
server.listen({ host, port, backlog: 4096 }, () => {
  console.log(`better-sse hub listening on http://${host}:${server.address().port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
