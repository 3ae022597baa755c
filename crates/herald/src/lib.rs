//! # Herald
//!
//! A real-time notification hub: browsers hold a Server-Sent Events connection (or a
//! WebSocket), backends publish events over HTTP (or call this library directly), and the hub
//! delivers each event to exactly the connections it targets.
//!
//! ## Layout
//!
//! | Module | What it is |
//! |---|---|
//! | [`hub`] | [`Hub`], the facade: start, connect, publish, disconnect, stats, shutdown; `hub/tasks.rs`: its background loops (heartbeat, sweep, token expiry, presence) |
//! | [`helpers`] | backend conveniences over [`Hub::publish`] with the seeds' names and payloads: `send_to_user`, `send_to_users`, `notify_user`, `send_alert`, `send_notification`, the domain helpers over `send_entity_notification` ([`EntityKind`](helpers::EntityKind), [`Recipients`](helpers::Recipients)), [`Severity`]… |
//! | `registry` (private) | live connections of every transport, indexed by id, user and channel; fan-out |
//! | [`transport`] | what the core asks of a transport: its [`WireFormat`](transport::WireFormat), the connection's [`Subscription`] and outbox |
//! | [`engine`] | [`Engine`]: the broker and the presence store of one backend, as the configuration's `engine` names it (memory or Redis); [`EngineError`](engine::EngineError) |
//! | [`broker`] | the [`Broker`](broker::Broker) trait (publish, ids, the replay window, commands between nodes): [`MemoryBroker`](broker::MemoryBroker) (one process, optional durable window) and [`RedisBroker`](broker::RedisBroker) (a cluster on Redis; `broker/redis/` is also the link to Redis both Redis halves share) |
//! | [`presence`] | the [`PresenceStore`](presence::PresenceStore) trait (who is connected where: stats, presence queries, presence events): [`MemoryPresence`](presence::MemoryPresence) (the registry answers) and [`RedisPresence`](presence::RedisPresence) (this node's presence in Redis, kept from the registry's joins and leaves; queries to every node) |
//! | [`sse`] | the SSE wire format ([`sse::frame`], [`sse::frame::SSE`]), and its `?envelope=1` variant ([`sse::envelope`]: every event a default `message` carrying `{"id","event","data"}`) |
//! | [`ws`] | the WebSocket transport: `GET /api/ws` ([`ws::subscribe`]), its JSON wire format ([`ws::frame`]) and the socket loop (pings, pong deadline, eviction) |
//! | [`mercure`] | the Mercure protocol (0.x and 1.0 side by side) at `/.well-known/mercure` (`--mercure`): topics as internal channels, selectors and private updates as a per-connection [`DeliveryFilter`](transport::DeliveryFilter), the publisher's ids, its own wire format |
//! | [`socketio`] | the Socket.IO transport: `/socket.io/` on socketioxide (protocol v5), the handshake `auth` through the checks of `GET /api/sse`, one registry connection per socket and the task that emits its events ([`socketio::format`]) |
//! | [`event`], [`target`] | events (id, name, JSON-or-text [`Payload`], per-format encodings), user, channel and connection ids, [`Target`] |
//! | [`history`] | the replay window (events, not bytes) and its limits |
//! | [`http`] | the HTTP API: [`http::router`] and its handlers (the SSE `GET` among them) |
//! | [`server`] | [`server::serve`]: accept loop, the lean HTTP/1.1 stream writer, graceful shutdown |
//! | [`lifecycle`] | [`Lifecycle`]: the one tree of cancellation tokens and tracked tasks, from `serve` through the hub to the engine |
//! | [`webhooks`] | inbound webhooks (`POST /api/webhooks/{name}`): the `[[webhooks]]` configuration, the signature schemes (Standard Webhooks, GitHub, Stripe), the rules that map a payload to events, their metrics |
//! | [`config`], [`error`], [`metrics`] | settings with defaults, the schema of every `herald serve` setting ([`config::Settings`]) and [`Hub::from_config`]; errors; Prometheus metrics |
//!
//! The hub core (`hub`, `registry`, `broker`, `presence`, `transport`) knows nothing of HTTP or
//! of any one wire format; `sse`, `http` and `server` are layers around it. Only `broker/` and
//! `presence/` know whether the hub is one node or many: the hub asks them the same way either
//! way. The `herald` binary only parses
//! configuration and calls `serve`.
//!
//! Nothing spawns a task when it is constructed. The binary makes one root [`Lifecycle`];
//! [`Hub::start`] runs the hub's background loops (`hub::tasks`: heartbeat, sweep, token
//! expiry, presence) and the fan-out shards below it and starts the broker and the presence
//! store below that; [`server::serve`] runs the connections on the root. Cancelling the root
//! shuts down in order: stop accepting; [`Hub::shutdown`] lets fan-out finish what was
//! published, ends the streams, then stops the loops, the presence store and the broker; wait
//! for the connections.
//!
//! ## The life of one event
//!
//! 1. `POST /api/sse/message` reaches [`http::publish::publish`], which parses the body into a
//!    [`Publication`](broker::Publication): a validated [`EventName`], a [`Payload`] (the
//!    compact JSON of `data`, or the raw `text`) and [`Targets`].
//! 2. [`Hub::publish`] hands it to the broker. The broker assigns the next [`EventId`], makes
//!    the transport-neutral [`Event`], retains it in the replay window ([`history`]; on
//!    Redis, a stream holding its storage form, [`Event::stored_form`]) and hands it to each
//!    node's delivery, in id order. (On Redis, `delivered` and `fallback: broadcast` are
//!    decided from the per-node counts every node's presence store keeps in Redis.)
//! 3. On each node the registry counts the targeted connections (that count is `delivered`)
//!    and appends the event to the queue of each of its shards. Publishing returns here, in
//!    microseconds, whatever the audience.
//! 4. Each shard's task pushes the event into the outbox of every targeted connection it
//!    holds, each at most once, in that connection's [`WireFormat`](transport::WireFormat):
//!    [`Event::encoded`] encodes it once per format and every connection of the format shares
//!    the bytes. A full outbox means a slow client: it is evicted, never waited for.
//! 5. Each connection's transport drains its [`Subscription`], coalescing whatever is queued
//!    into one write (for SSE, `server::event_stream` writes plain HTTP/1.1 streams itself;
//!    hyper serves the rest; a WebSocket's task, `ws::socket`, cuts the chunk back into one
//!    text message per event).
//!
//! A new transport plugs in at two places: a [`WireFormat`](transport::WireFormat) (with its
//! slot in [`transport::slot`]) and a handler that calls [`Hub::connect`] with
//! [`ConnectRequest::with_format`] and writes the [`Subscription`] to its socket; plus one line
//! in [`http::router`]. [`ws`] is one: `ws/frame.rs` (the format), `ws/mod.rs` (the handler,
//! which shares the checks of `GET /api/sse`), `ws/socket.rs` (the socket loop).
//!
//! ## Concurrency
//!
//! Connections are spread over shards (one per core); each shard's indices sit behind their own
//! `RwLock`, which fan-out holds for reading without ever awaiting. A small global mutex keeps
//! the cross-shard counts (limits, presence); on Redis, each join and leave also updates the
//! presence store's index under its own short mutex, taken inside that one (the store's
//! [`PresenceFeed`](presence::PresenceFeed)). Each outbox has its own small mutex. No lock is
//! held across an `.await`.
//!
//! ## Embedding
//!
//! Without the binary's dependencies (clap, reqwest, toml, anyhow, tracing-subscriber, pulled in
//! by the default `cli` feature): `herald = { version = "…", default-features = false }`. The
//! library reads no environment variable.
//!
//! ```no_run
//! use herald::{config::{HubConfig, HttpConfig}, http, Hub, Lifecycle, UserId};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let lifecycle = Lifecycle::new();
//! let hub = Hub::start_in_memory(HubConfig::default(), &lifecycle);
//! let app = axum::Router::new().merge(http::router(http::AppState::new(hub.clone(), HttpConfig::default())));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//! hub.notify_user(&UserId::new("alice")?, "Your order shipped", None, None).await?;
//! // At exit: stop everything, end the streams, then wait for what is left.
//! lifecycle.cancel();
//! hub.shutdown().await;
//! lifecycle.wait(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! Or build everything from the same [`config::Settings`] as `herald serve` (any serde format;
//! unset settings take their defaults), on the engine it names:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings: herald::config::Settings =
//!     serde_json::from_str(r#"{"heartbeat_interval": "5s", "data_dir": "/var/lib/herald"}"#)?;
//! let config = settings.into_config()?;
//! config.validate()?;
//! let lifecycle = herald::Lifecycle::new(); // cancel it to shut down
//! let hub = herald::Hub::from_config(&config, &lifecycle).await?;
//! let state = herald::http::AppState::new(hub, config.http.clone());
//! let listener = herald::server::bind(&config)?;
//! let options = herald::server::ServerOptions::from_config(&config)?;
//! herald::server::serve(listener, state, lifecycle, options).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod broker;
mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod helpers;
pub mod history;
pub mod http;
pub mod hub;
pub mod idempotency;
pub mod lifecycle;
pub mod mercure;
pub mod metrics;
pub mod presence;
mod registry;
pub mod server;
pub mod socketio;
pub mod sse;
pub mod target;
pub mod transport;
pub mod webhooks;
pub mod ws;

pub use engine::Engine;
pub use error::{Error, InvalidInput, Result};
pub use event::{Event, EventId, EventName, Payload, PayloadKind};
pub use helpers::Severity;
pub use hub::{ConnectRequest, Hub, Stats};
pub use lifecycle::Lifecycle;
pub use registry::{RegistryCounts, TransportCloser};
pub use target::{ChannelName, ConnectionId, Fallback, Target, Targets, UserId};
pub use transport::{Subscription, WireFormat};
