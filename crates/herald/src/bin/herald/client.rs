//! `herald publish`, `herald stats` and `herald health`: a small HTTP client for operators,
//! scripts and container health checks.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

/// Where the hub is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// Base URL of the hub.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Publisher key, if the hub requires one.
    #[arg(long, env = "HERALD_PUBLISHER_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Event name.
    #[arg(long, default_value = "notification")]
    event: String,
    /// Event data, as JSON (a string needs its quotes: --data '"hi"').
    #[arg(long)]
    data: String,
    /// Target a user's connections (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// Target a channel's subscribers (repeatable).
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// Target one connection id (repeatable).
    #[arg(long = "connection")]
    connections: Vec<String>,
    /// Target every connection.
    #[arg(long)]
    broadcast: bool,
    /// Broadcast when the targets match nobody.
    #[arg(long)]
    fallback_broadcast: bool,
    /// Idempotency key (sent as the `Idempotency-Key` header): running the same command again
    /// with the same key within the hub's idempotency window publishes nothing and prints the
    /// first answer, so a script may safely retry after a timeout or `outcome_unknown`.
    #[arg(long)]
    idempotency_key: Option<String>,
}

pub(crate) async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&args.data).with_context(|| {
        format!(
            "--data must be JSON; for a plain string, quote it: --data '\"{}\"'",
            args.data
        )
    })?;
    let mut body = json!({ "event": args.event, "data": data });
    if !args.users.is_empty() {
        body["users"] = json!(args.users);
    }
    if !args.channels.is_empty() {
        body["channels"] = json!(args.channels);
    }
    if !args.connections.is_empty() {
        body["connections"] = json!(args.connections);
    }
    if args.broadcast {
        body["broadcast"] = json!(true);
    }
    if args.fallback_broadcast {
        body["fallback"] = json!("broadcast");
    }
    let answer = request(
        &args.client,
        reqwest::Method::POST,
        "/api/sse/message",
        Some(body),
        args.idempotency_key.as_deref(),
    )
    .await?;
    println!("{answer}");
    Ok(())
}

pub(crate) async fn stats(args: ClientArgs) -> anyhow::Result<()> {
    let answer = request(&args, reqwest::Method::GET, "/api/sse/stats", None, None).await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// Arguments of `herald health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// Base URL of the hub (plain HTTP).
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Ask `/readyz` (can the hub serve: its engine is reachable) instead of `/healthz` (the
    /// process is alive).
    #[arg(long)]
    ready: bool,
}

/// How long `herald health` waits for the whole answer.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `herald health`: GET `/healthz` (or `/readyz` with `--ready`) and succeed only on a `2xx`
/// within [`HEALTH_TIMEOUT`]. Made for `HEALTHCHECK` in images without curl: the exit status is
/// 0 when healthy (the answer is printed), 1 otherwise (one line on stderr, never a backtrace:
/// Docker keeps the output in `docker inspect`).
pub(crate) async fn health(args: HealthArgs) -> anyhow::Result<()> {
    match check_health(&args).await {
        Ok(answer) => {
            println!("{answer}");
            Ok(())
        }
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn check_health(args: &HealthArgs) -> anyhow::Result<String> {
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let url = format!("{}{}", args.url.trim_end_matches('/'), path);
    let client = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT)
        .connect_timeout(HEALTH_TIMEOUT)
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the hub at {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", text.trim());
    }
    Ok(text.trim().to_owned())
}

async fn request(
    args: &ClientArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", args.url.trim_end_matches('/'), path);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let mut req = client.request(method, &url);
    if let Some(key) = &args.key {
        req = req.bearer_auth(key);
    }
    if let Some(key) = idempotency_key {
        req = req.header("idempotency-key", key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req
        .send()
        .await
        .with_context(|| format!("cannot reach the hub at {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value["error"]["message"].as_str().unwrap_or("(no message)");
        let code = value["error"]["code"].as_str().unwrap_or("unknown");
        bail!("the hub answered {status}: {code}: {message}");
    }
    Ok(value)
}
