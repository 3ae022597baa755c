//! The `herald` binary: `herald serve` runs the hub; `herald publish` and `herald stats` talk to a
//! running one. All the work is in the library; this file parses configuration, sets up logging
//! and signals, and calls [`herald::server::serve`].

mod client;
mod settings;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use herald::config::EngineConfig;
use herald::http::AppState;
use herald::{Hub, Lifecycle};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: a real-time notification hub over Server-Sent Events",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `herald` serves with these settings.
    #[command(flatten)]
    serve: Box<settings::ServeArgs>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (the default command).
    Serve(Box<settings::ServeArgs>),
    /// Publish one event to a running hub.
    Publish(client::PublishArgs),
    /// Print a running hub's stats.
    Stats(client::ClientArgs),
    /// Check a running hub: exit 0 if `/healthz` (or `/readyz` with `--ready`) answers 2xx within 2 s.
    Health(client::HealthArgs),
}

/// The `herald` command, its settings named by the environment rule (`settings::env_name`).
fn command() -> clap::Command {
    settings::with_env_names(Cli::command()).mut_subcommand("serve", settings::with_env_names)
}

fn main() -> anyhow::Result<()> {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The matches of whichever command holds the serve settings: `herald serve` or `herald`.
    let serve_matches = match matches.subcommand() {
        Some(("serve", m)) => m.clone(),
        _ => matches.clone(),
    };
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    match command {
        Command::Serve(args) => {
            // A second runtime for API requests (publish, admin, health): they stay prompt
            // while the main runtime is busy writing to thousands of event streams.
            let api = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
                .thread_name("herald-api")
                .enable_all()
                .build()
                .context("starting the API runtime")?;
            let result = runtime.block_on(serve(&args, &serve_matches, api.handle().clone()));
            api.shutdown_timeout(std::time::Duration::from_secs(1));
            result
        }
        Command::Publish(args) => runtime.block_on(client::publish(args)),
        Command::Stats(args) => runtime.block_on(client::stats(args)),
        Command::Health(args) => runtime.block_on(client::health(args)),
    }
}

async fn serve(
    args: &settings::ServeArgs,
    matches: &ArgMatches,
    api: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let (config, log_format) = settings::load(args, matches)?;
    init_logging(log_format);
    config.validate()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let listener = herald::server::bind(&config)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let engine_name = match &config.engine {
        EngineConfig::Memory => "memory",
        EngineConfig::Redis(_) => "redis",
    };
    // The root of every task of the process: the signals cancel it, `serve` then shuts down.
    let lifecycle = Lifecycle::new();
    let hub = Hub::from_config(&config, &lifecycle).await?;
    let state = AppState::new(hub, config.http.clone());
    // Not on the lifecycle: it outlives the shutdown it starts (a second signal exits at once).
    tokio::spawn(watch_signals(lifecycle.token().clone()));
    tracing::info!(
        engine = engine_name,
        publisher_keys = config.http.publisher_keys.len(),
        jwt = config.http.jwt.is_some(),
        webhooks = config.http.webhooks.len(),
        tls = config.tls.is_some(),
        // What applies: with JWT on, identities come from tokens and `?userId=` is refused.
        identity_from_query = config.http.identity_from_query && config.http.jwt.is_none(),
        "herald listening on {scheme}://{addr}"
    );
    let mut options = herald::server::ServerOptions::from_config(&config)
        .context("setting up the server (TLS files?)")?;
    options.api_runtime = Some(api);
    // A benchmark switch, not a setting: serve plain HTTP/1.1 streams through hyper.
    options.lean_event_streams = std::env::var_os("HERALD_STREAMS_VIA_HYPER").is_none();
    // On a worker thread, not on the thread that blocks on `main`'s future: a connection's task
    // then starts on the worker that accepted it (tokio's local queue) instead of being handed
    // from here to a worker, a wake-up and a context switch per connection.
    tokio::spawn(herald::server::serve(listener, state, lifecycle, options))
        .await
        .context("the server task failed")??;
    tracing::info!("herald stopped");
    Ok(())
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM; exits at once on the second.
async fn watch_signals(shutdown: CancellationToken) {
    for n in 0.. {
        wait_for_signal().await;
        if n == 0 {
            tracing::info!("shutting down (signal again to exit at once)");
            shutdown.cancel();
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: herald::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        herald::config::LogFormat::Json => builder.json().init(),
        herald::config::LogFormat::Text => builder.init(),
    }
}
