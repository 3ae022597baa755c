// A plain Node socket.io notification server, the way seeds 000 and 002 run one beside their SSE
// layer: the benchmark peer of Herald's `/socket.io/` endpoint (scripts/bench-ab --b
// node-socketio=bench/socketio/server.mjs).
//
// Herald-like paths, so that herald-bench drives it with `--target generic`:
//
//   /socket.io/                   socket.io 4 (protocol v5), `websocket` and `polling`; the
//                                 handshake `auth` is {userId, channels: [...]} (what Herald's
//                                 Socket.IO endpoint takes); the socket joins one room per
//                                 channel and `user:<id>`, then gets an event `connected`
//   POST /api/sse/message         {"event","data","channels","users","broadcast"}
//                                 → 200 {"id", "delivered": n}
//   GET  /api/sse/stats           {"connections": n}
//
// Kept idiomatic and fair: the server options of seed 002 (pingInterval 25 s, pingTimeout 60 s,
// both transports), rooms and `io.to(rooms).emit`, which sends a socket in several of the
// rooms the event once (like Herald); no per-event logging, no artificial delays.
//
//   node server.mjs [--host 127.0.0.1] [--port 3000]      (or HOST / PORT in the environment)

import http from "node:http";
import { Server } from "socket.io";

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[name.toUpperCase()] ?? fallback;
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "3000"));
const MAX_BODY = 64 * 1024;
let nextEventId = 1;
let nextConnectionId = 1;

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer();
const io = new Server(server, {
  transports: ["websocket", "polling"],
  pingTimeout: 60000,
  pingInterval: 25000,
  path: "/socket.io",
  // A benchmark peer on loopback: no CORS rules to evaluate.
  cors: { origin: true, credentials: true },
});

/** The number of sockets an emit to `rooms` reaches (each socket once). */
function audience(rooms) {
  const adapterRooms = io.of("/").adapter.rooms;
  if (rooms.length === 1) return adapterRooms.get(rooms[0])?.size ?? 0;
  const sockets = new Set();
  for (const room of rooms) for (const id of adapterRooms.get(room) ?? []) sockets.add(id);
  return sockets.size;
}

io.on("connection", (socket) => {
  const auth = socket.handshake.auth ?? {};
  const userId = typeof auth.userId === "string" ? auth.userId : "";
  const channels = Array.isArray(auth.channels)
    ? auth.channels.filter((c) => typeof c === "string" && c.length > 0)
    : [];
  const rooms = channels.map((c) => `channel:${c}`);
  if (userId !== "") rooms.push(`user:${userId}`);
  if (rooms.length > 0) socket.join(rooms);
  socket.emit("connected", {
    connectionId: String(nextConnectionId++),
    userId,
    channels,
  });
});

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
    const id = String(nextEventId++);
    let delivered = 0;
    if (message.broadcast === true) {
      delivered = io.of("/").sockets.size;
      io.emit(message.event, message.data, id);
    } else {
      const rooms = [
        ...(message.channels ?? []).map((c) => `channel:${c}`),
        ...(message.users ?? []).map((u) => `user:${u}`),
      ];
      if (rooms.length > 0) {
        delivered = audience(rooms);
        io.to(rooms).emit(message.event, message.data, id);
      }
    }
    sendJson(res, 200, { id, delivered });
  });
}

server.on("request", (req, res) => {
  // socket.io's own handler answers /socket.io/ (it listens on the same server).
  if (req.url?.startsWith("/socket.io")) return;
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
  if (req.method === "POST" && url.pathname === "/api/sse/message") {
    publish(req, res);
  } else if (req.method === "GET" && url.pathname === "/api/sse/stats") {
    sendJson(res, 200, { connections: io.of("/").sockets.size });
  } else {
    sendJson(res, 404, { error: "not_found" });
  }
});
server.listen({ host, port, backlog: 4096 }, () => {
  console.log(`socket.io hub listening on http://${host}:${server.address().port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
