//! `herald-bench`: the load generator of Herald. It drives Herald, nchan or any other SSE (or
//! WebSocket) server on this machine (loopback only) and reports throughput, completeness, latency and the
//! server's CPU and memory:
//!
//! - `fanout`: N subscribers on one channel, M published events → deliveries/s, loss,
//!   duplicates, reordering, publish-to-receive latency, server CPU per million deliveries.
//! - `connections`: C idle connections over several worker processes → connect rate, server
//!   memory per connection; optionally a fan-out to all of them while they are held.
//! - `publish`: U users, M publishes each to one random user → publishes/s, publish latency,
//!   and that every user got exactly its events.

mod fleet;
mod http;
mod probe;
mod publish;
mod report;
mod run;
mod sio;
mod sse;
mod target;
mod track;
mod util;
mod worker;
mod ws;

use clap::{Args, Parser, Subcommand};

use crate::target::{BodyMode, PublishTo, TargetKind, Transport};

#[derive(Debug, Parser)]
#[command(
    name = "herald-bench",
    version,
    about = "Load generator for Herald and other Server-Sent Events servers (loopback only)",
    after_help = "Examples:\n  \
        herald-bench fanout --subscribers 1000 --events 1000 --server-pid $(pgrep -x herald)\n  \
        herald-bench connections --connections 30000 --processes 2 --hold 10\n  \
        herald-bench publish --users 1000 --events 50000 --concurrency 32\n  \
        herald-bench fanout --target nchan --url http://127.0.0.1:8090 --subscribers 100"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N subscribers on one channel, M published events: deliveries/s, completeness, latency.
    Fanout(FanoutArgs),
    /// C idle connections (SSE or WebSocket): connect rate and server memory per connection.
    Connections(ConnectionsArgs),
    /// U users with one connection each, M publishes to random users: publishes/s, latency.
    Publish(PublishArgs),
    /// Internal: one worker process of a run (JSON lines on stdin/stdout).
    #[command(hide = true)]
    Worker {
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Subscribers, each with its own connection, all on `--channel`.
    #[arg(long, short = 'n', default_value_t = 100)]
    subscribers: u64,
    /// Events to publish to the channel.
    #[arg(long, short = 'm', default_value_t = 1000)]
    events: u64,
    #[command(flatten)]
    publisher: PublisherArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct ConnectionsArgs {
    /// Idle connections to open.
    #[arg(long, short = 'c', default_value_t = 1000)]
    connections: u64,
    /// Seconds to keep them open once connected (a fan-out, if any, happens within).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Publish this many events to all of them while they are held, and check they all arrive.
    #[arg(long, default_value_t = 0)]
    then_fanout_events: u64,
    #[command(flatten)]
    publisher: PublisherArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// Users, each holding one connection (`userId=<prefix><i>`).
    #[arg(long, short = 'u', default_value_t = 100)]
    users: u64,
    /// Publishes, each to one user picked at random.
    #[arg(long, short = 'm', default_value_t = 10000)]
    events: u64,
    /// Seed of the random user choice (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    publisher: PublisherArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

/// How events are published.
#[derive(Debug, Clone, Args)]
struct PublisherArgs {
    /// Events per second; 0 = as fast as the server accepts them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Publish requests in flight, each on its own keep-alive connection [default: 1 for
    /// fanout and connections, so that arrival order is checkable; 32 for publish].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Size of each event's data JSON (`{"seq","ts","pad"}`), padded with `x`.
    #[arg(long, default_value_t = 150)]
    payload_bytes: usize,
    /// Seconds one publish request may take.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    /// Events per publish request: above 1, each request POSTs a JSON array of this many
    /// events to Herald's batch endpoint (the publish URL with `/messages` for `/message`).
    /// Herald targets only.
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

/// Which server, at which URLs.
#[derive(Debug, Clone, Args)]
struct TargetArgs {
    /// Kind of server: sets the default URL templates, publish body and readiness rule.
    #[arg(long, value_enum, default_value_t = TargetKind::Herald)]
    target: TargetKind,
    /// How subscribers receive events: sse (GET a text/event-stream), websocket (Herald:
    /// ws://…/api/ws, one JSON message per event) or socketio (Herald: sio://…/socket.io/,
    /// Socket.IO v5 over WebSocket, identity in the handshake auth built from the URL's query)
    /// [default: the subscribe URLs' scheme, sse for the presets].
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Base URL of the server; repeat for several server processes (subscribers are spread
    /// over them).
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    urls: Vec<String>,
    /// Subscribe URL template (overrides the preset; repeatable). Placeholders: {channel},
    /// {user}, {i}. E.g. 'http://127.0.0.1:8080/api/sse?channels={channel}&userId={user}'.
    #[arg(long = "subscribe-url")]
    subscribe_urls: Vec<String>,
    /// Publish URL template (overrides the preset; repeatable), e.g.
    /// 'http://127.0.0.1:8090/pub/{channel}'.
    #[arg(long = "publish-url")]
    publish_urls: Vec<String>,
    /// Publish body: herald = {"event","data","channels"|"users"}; raw = the data alone.
    #[arg(long, value_enum)]
    publish_body: Option<BodyMode>,
    /// With several publish URLs: send each event to all of them, or only to the first.
    #[arg(long, value_enum, default_value_t = PublishTo::All)]
    publish_to: PublishTo,
    /// Herald-style stats URL to read before and after, repeatable, summed [herald: each
    /// --url's /api/sse/stats]; "none" to skip.
    #[arg(long = "stats-url")]
    stats_urls: Vec<String>,
    /// A subscriber counts as registered once this event arrives [herald: connected].
    #[arg(long)]
    ready_event: Option<String>,
    /// A subscriber counts as registered once the response headers arrive.
    #[arg(long, conflicts_with = "ready_event")]
    ready_on_headers: bool,
    /// Publisher key, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "HERALD_PUBLISHER_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Extra request header 'Name: value' (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The channel of fanout and connections.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Subscriber i is user <prefix><i> (in publish, {channel} is that name too).
    #[arg(long, default_value = "u")]
    user_prefix: String,
    /// Event name in Herald-style publish bodies.
    #[arg(long, default_value = "bench")]
    event_name: String,
}

/// Bounds, scale-out and output.
#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Seconds the whole run (connect, publish, deliver) may take; --hold comes on top. What
    /// arrived by then is reported.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Seconds one connection may take to be ready.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Connection attempts in flight at once (over all workers). Keep it below the server's
    /// listen backlog (often 128), or dropped SYNs cost a 1 s retransmit each.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Spread connections over 127.0.0.1 … 127.0.0.N (each address has ~28k ephemeral
    /// ports) [default: as many as needed].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    source_addrs: u32,
    /// Worker processes holding the connections (each has its own open-file limit) [default:
    /// as many as needed; 1 = in this process].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    processes: usize,
    /// A server process to measure (CPU from /proc/PID/stat, VmRSS); repeatable.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Print one JSON object with the results on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// No progress bars on stderr.
    #[arg(long)]
    no_progress: bool,
    /// Exit with status 2 if anything was lost, duplicated, misrouted or failed.
    #[arg(long)]
    check: bool,
    /// Close connections with FIN (default: RST, which leaves no TIME_WAIT behind).
    #[arg(long)]
    graceful_close: bool,
    /// Runtime threads of this process [default: the number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Many connections need many file descriptors: the soft limit goes up to the hard one.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let threads = match &cli.command {
        Command::Worker { threads } => *threads,
        Command::Fanout(a) => a.run.threads.unwrap_or(0),
        Command::Connections(a) => a.run.threads.unwrap_or(0),
        Command::Publish(a) => a.run.threads.unwrap_or(0),
    };
    let threads = if threads == 0 { run::cpus() } else { threads };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Worker { .. } => worker::worker_process_main().await.map(|()| true),
            Command::Fanout(a) => {
                let job = run::Job::new(
                    run::Mode::Fanout,
                    a.subscribers,
                    a.events,
                    0.0,
                    None,
                    &a.publisher,
                    &a.target,
                    &a.run,
                    nofile,
                )?;
                run::execute(job).await
            }
            Command::Connections(a) => {
                let job = run::Job::new(
                    run::Mode::Connections,
                    a.connections,
                    a.then_fanout_events,
                    a.hold,
                    None,
                    &a.publisher,
                    &a.target,
                    &a.run,
                    nofile,
                )?;
                run::execute(job).await
            }
            Command::Publish(a) => {
                let job = run::Job::new(
                    run::Mode::Publish,
                    a.users,
                    a.events,
                    0.0,
                    a.seed,
                    &a.publisher,
                    &a.target,
                    &a.run,
                    nofile,
                )?;
                run::execute(job).await
            }
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("herald-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
