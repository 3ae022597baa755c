//! One benchmark run from start to end: plan the workers, connect, publish, wait for delivery,
//! hold, close, measure the server, and report.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio::time::Instant;

use crate::fleet::Fleet;
use crate::http::{self, Client};
use crate::probe::Probe;
use crate::publish::{self, PublishPlan, Routing};
use crate::report::{self, Report};
use crate::target::{self, Endpoint, Target, TargetInput, MAX_SOURCE_ADDRS};
use crate::worker::{ExpectSpec, WorkerSpec};
use crate::{PublisherArgs, RunArgs, TargetArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Fanout,
    Connections,
    Publish,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Fanout => "fanout",
            Mode::Connections => "connections",
            Mode::Publish => "publish",
        }
    }
}

/// A validated run.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) mode: Mode,
    pub(crate) subscribers: u64,
    pub(crate) events: u64,
    pub(crate) hold: Duration,
    pub(crate) seed: u64,
    pub(crate) target: Target,
    pub(crate) channel: String,
    pub(crate) user_prefix: String,
    pub(crate) event_name: String,
    /// Headers for every request.
    pub(crate) headers: Vec<(String, String)>,
    /// Headers for publish and stats requests (with the key).
    pub(crate) publish_headers: Vec<(String, String)>,
    pub(crate) rate: f64,
    pub(crate) concurrency: usize,
    /// Events per publish request (1: the single endpoint; more: the batch endpoint).
    pub(crate) batch: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) connect_concurrency: usize,
    pub(crate) source_addrs: u32,
    pub(crate) processes: usize,
    pub(crate) server_pids: Vec<u32>,
    pub(crate) json: bool,
    pub(crate) progress: bool,
    pub(crate) check: bool,
    pub(crate) graceful_close: bool,
}

pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn secs(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow::anyhow!("{what} must be a non-negative number of seconds"))
}

/// Ephemeral ports available per source address (`ip_local_port_range`).
fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            let (lo, hi) = (it.next()??, it.next()??);
            (hi >= lo).then_some(hi - lo + 1)
        })
        .unwrap_or(28_232)
}

impl Job {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mode: Mode,
        subscribers: u64,
        events: u64,
        hold: f64,
        seed: Option<u64>,
        p: &PublisherArgs,
        t: &TargetArgs,
        r: &RunArgs,
        nofile: u64,
    ) -> anyhow::Result<Job> {
        target::check_name("--channel", &t.channel)?;
        target::check_name("--user-prefix", &t.user_prefix)?;
        target::check_name("--event-name", &t.event_name)?;
        if subscribers == 0 {
            bail!("need at least one subscriber");
        }
        if mode == Mode::Publish && events > 0 && subscribers == 0 {
            bail!("--users must be at least 1");
        }
        if !(p.rate >= 0.0 && p.rate.is_finite()) {
            bail!("--rate must be a non-negative number");
        }
        let target = Target::resolve(&TargetInput {
            kind: t.target,
            transport: t.transport,
            bases: &t.urls,
            subscribe: &t.subscribe_urls,
            publish: &t.publish_urls,
            stats: &t.stats_urls,
            body: t.publish_body,
            ready_event: t.ready_event.as_deref(),
            ready_on_headers: t.ready_on_headers,
            publish_to: t.publish_to,
            per_user: mode == Mode::Publish,
        })?;
        if mode == Mode::Publish {
            for e in &target.publish {
                if target.body == target::BodyMode::Raw && !e.uses_user() && !e.uses_channel() {
                    bail!(
                        "publish with a raw body needs {{user}} or {{channel}} in the publish URL \
                         ({e}), or nothing says which user an event is for"
                    );
                }
            }
        }
        let mut headers = Vec::new();
        for h in &t.headers {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?}: expected 'Name: value'"))?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty()
                || name.bytes().any(|b| !b.is_ascii_graphic())
                || value.bytes().any(|b| b < b' ')
            {
                bail!("--header {h:?}: bad header");
            }
            headers.push((name.to_owned(), value.to_owned()));
        }
        let mut publish_headers = headers.clone();
        if let Some(key) = &t.key {
            if key.bytes().any(|b| b < b' ') {
                bail!("--key holds control characters");
            }
            publish_headers.push(("Authorization".to_owned(), format!("Bearer {key}")));
        }
        let concurrency = p
            .concurrency
            .unwrap_or(if mode == Mode::Publish { 32 } else { 1 });
        if concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if p.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if p.batch > 1
            && (target.body != crate::target::BodyMode::Herald
                || target.publish.iter().any(|e| !e.raw.ends_with("/message")))
        {
            bail!("--batch needs Herald publish URLs ending in /message (the batch endpoint is /messages)");
        }

        // Open files: each connection is one; keep a margin for the rest.
        let margin = 256 + (concurrency * target.publish.len()) as u64;
        let per_process = nofile.saturating_sub(margin).max(1);
        let processes = if r.processes == 0 {
            subscribers.div_ceil(per_process).max(1) as usize
        } else {
            let share = subscribers.div_ceil(r.processes as u64);
            if share > per_process {
                bail!(
                    "{subscribers} connections over {} process(es) is {share} per process, more than \
                     the open-file limit allows ({nofile}); use --processes {} or more",
                    r.processes,
                    subscribers.div_ceil(per_process)
                );
            }
            r.processes
        };
        if processes as u64 > subscribers {
            bail!("--processes {processes} is more than the {subscribers} connections");
        }

        // Source addresses: each holds about `ports` bound sockets.
        let usable = ephemeral_ports() * 9 / 10;
        let ipv4 = target.subscribe.iter().all(|e| e.addr.is_ipv4());
        let source_addrs = if r.source_addrs == 0 {
            if ipv4 {
                subscribers
                    .div_ceil(usable)
                    .clamp(1, u64::from(MAX_SOURCE_ADDRS)) as u32
            } else {
                1
            }
        } else {
            r.source_addrs
        };
        if source_addrs > MAX_SOURCE_ADDRS {
            bail!("--source-addrs is at most {MAX_SOURCE_ADDRS}");
        }
        if !ipv4 && source_addrs > 1 {
            bail!("--source-addrs needs an IPv4 target (127.x.x.x); [::1] has one address");
        }
        if subscribers.div_ceil(u64::from(source_addrs)) > usable {
            bail!(
                "{subscribers} connections over {source_addrs} source address(es) exceed the \
                 ~{usable} ephemeral ports of each; use --source-addrs {}",
                subscribers.div_ceil(usable)
            );
        }

        Ok(Job {
            mode,
            subscribers,
            events,
            hold: secs("--hold", hold)?,
            seed: seed.unwrap_or_else(|| crate::util::now_us() ^ u64::from(std::process::id())),
            target,
            channel: t.channel.clone(),
            user_prefix: t.user_prefix.clone(),
            event_name: t.event_name.clone(),
            headers,
            publish_headers,
            rate: p.rate,
            concurrency,
            batch: p.batch,
            payload_bytes: p.payload_bytes,
            request_timeout: secs("--request-timeout", p.request_timeout)?,
            timeout: secs("--timeout", r.timeout)?,
            connect_timeout: secs("--connect-timeout", r.connect_timeout)?,
            connect_concurrency: r.connect_concurrency.max(1),
            source_addrs,
            processes,
            server_pids: r.server_pids.clone(),
            json: r.json,
            progress: !r.no_progress,
            check: r.check,
            graceful_close: r.graceful_close,
        })
    }

    fn specs(&self, connect_deadline: Duration) -> Vec<WorkerSpec> {
        let expect = match self.mode {
            Mode::Fanout | Mode::Connections if self.events > 0 => ExpectSpec::All {
                events: self.events,
            },
            Mode::Fanout | Mode::Connections => ExpectSpec::Nothing,
            Mode::Publish => ExpectSpec::Targeted {
                events: self.events,
                users: self.subscribers,
                seed: self.seed,
            },
        };
        let p = self.processes as u64;
        (0..p)
            .map(|w| {
                let first = self.subscribers * w / p;
                let end = self.subscribers * (w + 1) / p;
                WorkerSpec {
                    worker: w as usize,
                    first,
                    count: end - first,
                    subscribe: self
                        .target
                        .subscribe
                        .iter()
                        .map(|e| e.raw.clone())
                        .collect(),
                    source_addrs: self.source_addrs,
                    headers: self.headers.clone(),
                    ready_event: self.target.ready_event.clone(),
                    channel: self.channel.clone(),
                    user_prefix: self.user_prefix.clone(),
                    per_user_channel: self.mode == Mode::Publish,
                    expect: expect.clone(),
                    connect_timeout_ms: self.connect_timeout.as_millis() as u64,
                    connect_concurrency: (self.connect_concurrency / self.processes).max(1),
                    connect_deadline_ms: connect_deadline.as_millis() as u64,
                    graceful_close: self.graceful_close,
                }
            })
            .collect()
    }
}

fn bar(enabled: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(5));
    b.set_style(
        ProgressStyle::with_template(
            "{msg:>11} [{bar:36}] {human_pos}/{human_len} {rate:>10} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
        .progress_chars("=> "),
    );
    b.set_message(msg);
    b
}

/// Herald's `/api/sse/stats` of every server, the numbers summed; `None` if the target has
/// none or one cannot be read.
async fn fetch_stats(urls: &[Endpoint], headers: &[(String, String)]) -> Option<serde_json::Value> {
    if urls.is_empty() {
        return None;
    }
    let mut sum = serde_json::Map::new();
    for url in urls {
        let stats = fetch_one_stats(url, headers).await?;
        for key in [
            "connections",
            "eventsPublished",
            "eventsDelivered",
            "evictedSlowConsumers",
        ] {
            if let Some(n) = stats.get(key).and_then(serde_json::Value::as_u64) {
                let total = sum
                    .get(key)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
                    + n;
                sum.insert(key.to_owned(), total.into());
            }
        }
    }
    Some(serde_json::Value::Object(sum))
}

async fn fetch_one_stats(
    url: &Endpoint,
    headers: &[(String, String)],
) -> Option<serde_json::Value> {
    let mut client = Client::new(url.addr);
    let mut path = Vec::new();
    url.write_path(
        &mut path,
        &target::Vars {
            channel: target::Name::fixed(""),
            user: target::Name::fixed(""),
            index: 0,
        },
    );
    let mut req = Vec::new();
    http::write_request(&mut req, "GET", &url.host, &path, headers, None);
    match client.send(&req, Duration::from_secs(10)).await {
        Ok(200) => serde_json::from_slice(&client.body).ok(),
        Ok(status) => {
            eprintln!("herald-bench: warning: {url} answered {status}");
            None
        }
        Err(e) => {
            eprintln!("herald-bench: warning: cannot read {url}: {e}");
            None
        }
    }
}

/// Runs the job and prints its report. Returns `false` when `--check` is given and the run
/// found a problem.
pub(crate) async fn execute(job: Job) -> anyhow::Result<bool> {
    let probe = Probe::new(&job.server_pids)?;
    let started = Instant::now();
    let deadline = started + job.timeout;
    let mut rep = Report::new(&job);

    let stats_before = fetch_stats(&job.target.stats, &job.publish_headers).await;
    let s_idle = probe.as_ref().and_then(Probe::try_sample);

    // Connect.
    let in_process = job.processes == 1;
    let child_threads = (cpus() / job.processes).max(1);
    let overflows_before = crate::probe::listen_overflows();
    let mut fleet = Fleet::start(job.specs(job.timeout), in_process, child_threads).await?;
    let connect_bar = bar(job.progress, job.subscribers, "connecting");
    let ready = fleet
        .wait_ready(deadline + Duration::from_secs(2), &connect_bar)
        .await;
    connect_bar.finish_and_clear();
    let ready = ready?;
    let s_connected = probe.as_ref().and_then(Probe::try_sample);
    // This benchmark's own processes, to tell whether the client or the server was the limit.
    let mut client_pids = vec![std::process::id()];
    client_pids.extend(fleet.child_pids());
    let client_probe = Probe::new(&client_pids).ok().flatten();
    let c_connected = client_probe.as_ref().and_then(Probe::try_sample);
    let mut c_before_publish = None;
    let mut c_delivered = None;
    rep.set_connect(&ready);
    if let (Some(a), Some(b)) = (overflows_before, crate::probe::listen_overflows()) {
        rep.connections.listen_overflows = Some(b.saturating_sub(a));
    }
    let hold_start = Instant::now();

    // Publish and wait for delivery.
    let mut s_before_publish = s_connected;
    let mut s_delivered = None;
    let mut stats_after = None;
    if job.events > 0 && ready.counts.connected > 0 {
        let routing = match job.mode {
            Mode::Publish => Routing::Users {
                prefix: job.user_prefix.clone(),
                users: job.subscribers,
                seed: job.seed,
            },
            _ => Routing::Channel(job.channel.clone()),
        };
        let plan = Arc::new(PublishPlan {
            urls: job.target.publish.clone(),
            body: job.target.body,
            event_name: job.event_name.clone(),
            routing,
            headers: job.publish_headers.clone(),
            events: job.events,
            rate: job.rate,
            concurrency: job.concurrency,
            batch: job.batch,
            payload_bytes: job.payload_bytes,
            request_timeout: job.request_timeout,
            deadline,
        });
        let acked = Arc::new(AtomicU64::new(0));
        let pub_bar = bar(job.progress, job.events, "publishing");
        let ticker = {
            let (acked, pub_bar) = (acked.clone(), pub_bar.clone());
            tokio::spawn(async move {
                loop {
                    pub_bar.set_position(acked.load(Relaxed));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        s_before_publish = probe.as_ref().and_then(Probe::try_sample);
        c_before_publish = client_probe.as_ref().and_then(Probe::try_sample);
        let outcome = publish::publish(plan, acked).await;
        ticker.abort();
        pub_bar.finish_and_clear();

        let expected_total = if job.mode == Mode::Publish {
            outcome.ok
        } else {
            outcome.ok * ready.counts.connected
        };
        let drain_bar = bar(job.progress, expected_total, "delivering");
        let drain_timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(2));
        let drained = fleet
            .drain(outcome.issued, &outcome.failed, drain_timeout, &drain_bar)
            .await;
        drain_bar.finish_and_clear();
        let drained = drained?;
        s_delivered = probe.as_ref().and_then(Probe::try_sample);
        c_delivered = client_probe.as_ref().and_then(Probe::try_sample);
        stats_after = fetch_stats(&job.target.stats, &job.publish_headers).await;
        rep.set_publish(&job, &outcome, &drained);
    } else if job.events > 0 {
        rep.problems
            .push("no subscriber connected: nothing was published".to_owned());
    }

    // Hold.
    let hold_end = hold_start + job.hold;
    if Instant::now() < hold_end {
        let secs_total = job.hold.as_secs().max(1);
        let hold_bar = bar(job.progress, secs_total, "holding");
        while Instant::now() < hold_end {
            hold_bar.set_position(hold_start.elapsed().as_secs().min(secs_total));
            tokio::time::sleep(
                hold_end
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500)),
            )
            .await;
        }
        hold_bar.finish_and_clear();
    }
    let s_held = probe.as_ref().and_then(Probe::try_sample);
    if stats_after.is_none() {
        stats_after = fetch_stats(&job.target.stats, &job.publish_headers).await;
    }

    // Close.
    let totals = fleet.finish(Duration::from_secs(60)).await?;
    rep.set_totals(&job, &totals);
    let s_closed = if probe.is_some() && job.mode == Mode::Connections {
        // Give the server a moment to notice and free the connections.
        tokio::time::sleep(Duration::from_secs(1)).await;
        probe.as_ref().and_then(Probe::try_sample)
    } else {
        None
    };
    if let Some(probe) = &probe {
        rep.set_server(
            probe.pids(),
            report::Samples {
                idle: s_idle,
                connected: s_connected,
                before_publish: s_before_publish,
                delivered: s_delivered,
                held: s_held,
                closed: s_closed,
            },
        );
    }
    rep.set_stats(stats_before.as_ref(), stats_after.as_ref());
    if let Some(client_probe) = &client_probe {
        rep.set_client(
            client_probe.pids(),
            c_connected,
            c_before_publish,
            c_delivered,
        );
    }
    rep.elapsed_secs = crate::util::round(started.elapsed().as_secs_f64(), 3);
    rep.finalize(&job);
    if job.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", rep.human(&job));
    }
    Ok(!job.check || rep.ok)
}
