//! The result of a run: a JSON document (`--json`) or a human summary, and the verdict.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::fleet::{DrainTotals, ReadyTotals, Totals};
use crate::probe::Sample;
use crate::publish::PublishOutcome;
use crate::run::{Job, Mode};
use crate::target::{TargetKind, Transport};
use crate::util::{round, thousands, Latency};

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) command: &'static str,
    /// No failure, loss, duplicate, misrouting or reordering.
    pub(crate) ok: bool,
    pub(crate) problems: Vec<String>,
    pub(crate) target: TargetKind,
    pub(crate) transport: Transport,
    pub(crate) subscribe_urls: Vec<String>,
    pub(crate) publish_urls: Vec<String>,
    pub(crate) elapsed_secs: f64,
    pub(crate) connections: ConnSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) publish: Option<PublishSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delivery: Option<DeliverySection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<ServerSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_stats: Option<StatsSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<ClientSection>,
}

/// This benchmark's own processes (main and workers) during publishing and delivery.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ClientSection {
    pub(crate) pids: Vec<u32>,
    pub(crate) publish_cpu_secs: Option<f64>,
    pub(crate) cpu_secs_per_million_deliveries: Option<f64>,
    pub(crate) rss_kib: Option<u64>,
    /// RSS of this benchmark's processes once every connection is ready, and that divided by
    /// the connections (an upper bound: it includes each process's baseline).
    pub(crate) rss_kib_connected: Option<u64>,
    pub(crate) rss_kib_per_connection: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct ConnSection {
    pub(crate) requested: u64,
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) processes: usize,
    pub(crate) source_addrs: u32,
    /// First attempt to last connection ready.
    pub(crate) connect_secs: f64,
    pub(crate) connects_per_sec: f64,
    /// Connections the kernel dropped during the connect phase because a listen queue was
    /// full (machine-wide `ListenOverflows`); each costs the client a SYN retransmit (1 s).
    pub(crate) listen_overflows: Option<u64>,
    /// Streams that ended before the run closed them.
    pub(crate) ended_early: u64,
    pub(crate) end_reasons: BTreeMap<String, u64>,
    pub(crate) hold_secs: f64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct PublishSection {
    pub(crate) requested: u64,
    /// Sequence numbers handed out (sent, or abandoned at the timeout).
    pub(crate) issued: u64,
    /// Confirmed with a 2xx.
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// HTTP requests (events × publish URLs).
    pub(crate) requests: u64,
    pub(crate) concurrency: usize,
    /// 0 = as fast as accepted.
    pub(crate) target_rate: f64,
    /// First request sent to last response.
    pub(crate) secs: f64,
    pub(crate) per_sec: f64,
    /// Request to response.
    pub(crate) latency_us: Latency,
    /// Sum of the `delivered` counts in the answers (Herald).
    pub(crate) server_reported_deliveries: Option<u64>,
    pub(crate) http_connections: u64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct DeliverySection {
    pub(crate) subscribers: u64,
    /// Events the connected subscribers should have received, summed.
    pub(crate) expected: u64,
    /// Benchmark events received, duplicates included.
    pub(crate) received: u64,
    pub(crate) unique: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    /// Events that arrived after one with a higher sequence number (expected with
    /// --concurrency > 1: concurrent publishes race).
    pub(crate) out_of_order: u64,
    /// Events a subscriber should not have received (another user's).
    pub(crate) misdirected: u64,
    /// Events whose Herald id was not greater than the one before on the same connection.
    pub(crate) id_regressions: u64,
    /// Received events whose publish was not confirmed.
    pub(crate) unconfirmed: u64,
    pub(crate) subscribers_with_loss: u64,
    /// Fan-out: complete subscribers whose arrival order differs from the majority's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) order_divergent_subscribers: Option<u64>,
    /// Everything arrived before the timeout.
    pub(crate) complete_in_time: bool,
    /// Deliveries counted at the end of the wait, over `secs`.
    pub(crate) delivered_in_window: u64,
    /// First publish to last delivery.
    pub(crate) secs: f64,
    pub(crate) per_sec: f64,
    /// Publish (the payload's `ts`) to receive.
    pub(crate) latency_us: Latency,
    /// Non-benchmark events seen (the hub's connected, heartbeats).
    pub(crate) other_events: u64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct ServerSection {
    pub(crate) pids: Vec<u32>,
    pub(crate) rss_kib_idle: Option<u64>,
    pub(crate) rss_kib_connected: Option<u64>,
    pub(crate) rss_kib_after_delivery: Option<u64>,
    pub(crate) rss_kib_end_of_hold: Option<u64>,
    pub(crate) rss_kib_after_close: Option<u64>,
    /// (connected − idle) / connections.
    pub(crate) rss_kib_per_connection: Option<f64>,
    pub(crate) connect_cpu_secs: Option<f64>,
    pub(crate) connect_cpu_us_per_connection: Option<f64>,
    /// From just before the first publish to the end of delivery.
    pub(crate) publish_cpu_secs: Option<f64>,
    pub(crate) cpu_secs_per_million_deliveries: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct StatsSection {
    pub(crate) connections_before: Option<u64>,
    pub(crate) connections_after: Option<u64>,
    pub(crate) events_delivered: Option<u64>,
    pub(crate) evicted_slow_consumers: Option<u64>,
}

/// Server readings along the run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Samples {
    pub(crate) idle: Option<Sample>,
    pub(crate) connected: Option<Sample>,
    pub(crate) before_publish: Option<Sample>,
    pub(crate) delivered: Option<Sample>,
    pub(crate) held: Option<Sample>,
    pub(crate) closed: Option<Sample>,
}

/// `7.5 ms`, `256 ms`, `2.34 s`.
fn fmt_secs(s: f64) -> String {
    if s < 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// CPU per delivery for the summary: per million deliveries, or per publish (one delivery
/// each, so seconds per million = µs per publish).
fn per_delivery(job: &Job, secs_per_million: f64) -> String {
    if job.mode == Mode::Publish {
        format!(" = {secs_per_million:.1} µs per publish")
    } else {
        format!(" = {secs_per_million:.3} s per million deliveries")
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round(n as f64 / secs, 1)
    } else {
        0.0
    }
}

fn reasons(map: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .take(4)
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Report {
    pub(crate) fn new(job: &Job) -> Self {
        Report {
            command: job.mode.name(),
            ok: false,
            problems: Vec::new(),
            target: job.target.kind,
            transport: job.target.transport,
            subscribe_urls: job.target.subscribe.iter().map(|e| e.raw.clone()).collect(),
            publish_urls: job.target.publish.iter().map(|e| e.raw.clone()).collect(),
            elapsed_secs: 0.0,
            connections: ConnSection {
                requested: job.subscribers,
                processes: job.processes,
                source_addrs: job.source_addrs,
                hold_secs: job.hold.as_secs_f64(),
                ..ConnSection::default()
            },
            publish: None,
            delivery: None,
            server: None,
            server_stats: None,
            client: None,
        }
    }

    pub(crate) fn set_connect(&mut self, r: &ReadyTotals) {
        let c = &mut self.connections;
        c.connected = r.counts.connected;
        c.failed = r.counts.failed;
        c.failures = r.failures.clone();
        if r.missing > 0 {
            let unresolved = c.requested.saturating_sub(c.connected + c.failed);
            c.failed += unresolved;
            *c.failures
                .entry("worker did not report in time".into())
                .or_default() += unresolved;
        }
        c.connect_secs = round(r.end_us.saturating_sub(r.start_us) as f64 / 1e6, 3);
        c.connects_per_sec = per_sec(c.connected, c.connect_secs);
    }

    pub(crate) fn set_publish(&mut self, job: &Job, o: &PublishOutcome, d: &DrainTotals) {
        let secs = o.elapsed.as_secs_f64();
        self.publish = Some(PublishSection {
            requested: job.events,
            issued: o.issued,
            ok: o.ok,
            failed: o.failed.len() as u64,
            errors: o.errors.clone(),
            requests: o.requests,
            concurrency: job.concurrency,
            target_rate: job.rate,
            secs: round(secs, 3),
            per_sec: per_sec(o.ok, secs),
            latency_us: Latency::of(&o.latency),
            server_reported_deliveries: o.server_delivered,
            http_connections: o.connections,
        });
        let window = d.last_rx_us.saturating_sub(o.first_send_us) as f64 / 1e6;
        let delivery = self.delivery.get_or_insert_with(DeliverySection::default);
        delivery.complete_in_time = d.complete;
        delivery.delivered_in_window = d.counts.received;
        delivery.secs = round(window, 3);
        delivery.per_sec = per_sec(d.counts.received, window);
    }

    pub(crate) fn set_totals(&mut self, job: &Job, t: &Totals) {
        let r = &t.r;
        self.connections.ended_early = r.subscribers_ended_early;
        self.connections.end_reasons = r.end_reasons.clone();
        if t.missing > 0 {
            self.problems.push(format!(
                "{} worker(s) did not report their results",
                t.missing
            ));
        }
        if job.events == 0 {
            return;
        }
        let Some(d) = self.delivery.as_mut() else {
            return;
        };
        d.subscribers = r.connected;
        d.expected = r.expected;
        d.received = r.received;
        d.unique = r.unique;
        d.lost = r.lost;
        d.duplicates = r.duplicates;
        d.out_of_order = r.out_of_order;
        d.misdirected = r.misdirected;
        d.id_regressions = r.id_regressions;
        d.unconfirmed = r.unconfirmed;
        d.subscribers_with_loss = r.subscribers_with_loss;
        d.order_divergent_subscribers = (job.mode != Mode::Publish).then_some(t.order_divergent);
        d.latency_us = Latency::of(&t.latency);
        d.other_events = r.other_events;
    }

    pub(crate) fn set_server(&mut self, pids: &[u32], s: Samples) {
        let connected = self.connections.connected;
        let deliveries = self.delivery.as_ref().map_or(0, |d| d.delivered_in_window);
        let cpu = |a: Option<Sample>, b: Option<Sample>| Some(round(b?.cpu_secs - a?.cpu_secs, 3));
        let mut server = ServerSection {
            pids: pids.to_vec(),
            rss_kib_idle: s.idle.map(|x| x.rss_kib),
            rss_kib_connected: s.connected.map(|x| x.rss_kib),
            rss_kib_after_delivery: s.delivered.map(|x| x.rss_kib),
            rss_kib_end_of_hold: s.held.map(|x| x.rss_kib),
            rss_kib_after_close: s.closed.map(|x| x.rss_kib),
            connect_cpu_secs: cpu(s.idle, s.connected),
            publish_cpu_secs: cpu(s.before_publish, s.delivered),
            ..ServerSection::default()
        };
        if connected > 0 {
            if let (Some(a), Some(b)) = (s.idle, s.connected) {
                server.rss_kib_per_connection = Some(round(
                    (b.rss_kib as f64 - a.rss_kib as f64) / connected as f64,
                    2,
                ));
            }
            server.connect_cpu_us_per_connection = server
                .connect_cpu_secs
                .map(|c| round(c * 1e6 / connected as f64, 1));
        }
        if deliveries > 0 {
            server.cpu_secs_per_million_deliveries = server
                .publish_cpu_secs
                .map(|c| round(c / (deliveries as f64 / 1e6), 3));
        }
        self.server = Some(server);
    }

    pub(crate) fn set_client(
        &mut self,
        pids: &[u32],
        connected: Option<Sample>,
        before: Option<Sample>,
        after: Option<Sample>,
    ) {
        let mut client = ClientSection {
            pids: pids.to_vec(),
            ..ClientSection::default()
        };
        if let Some(c) = connected {
            client.rss_kib_connected = Some(c.rss_kib);
            let n = self.connections.connected;
            client.rss_kib_per_connection = (n > 0).then(|| round(c.rss_kib as f64 / n as f64, 2));
        }
        if let (Some(a), Some(b)) = (before, after) {
            let deliveries = self.delivery.as_ref().map_or(0, |d| d.delivered_in_window);
            let cpu = round(b.cpu_secs - a.cpu_secs, 3);
            client.publish_cpu_secs = Some(cpu);
            client.cpu_secs_per_million_deliveries =
                (deliveries > 0).then(|| round(cpu / (deliveries as f64 / 1e6), 3));
            client.rss_kib = Some(b.rss_kib);
        }
        self.client = Some(client);
    }

    pub(crate) fn set_stats(
        &mut self,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) {
        if before.is_none() && after.is_none() {
            return;
        }
        let get = |v: Option<&serde_json::Value>, k: &str| {
            v.and_then(|v| v.get(k)).and_then(|x| x.as_u64())
        };
        let delta = |k: &str| Some(get(after, k)?.saturating_sub(get(before, k)?));
        self.server_stats = Some(StatsSection {
            connections_before: get(before, "connections"),
            connections_after: get(after, "connections"),
            events_delivered: delta("eventsDelivered"),
            evicted_slow_consumers: delta("evictedSlowConsumers"),
        });
    }

    /// Decides `ok` and lists the problems.
    pub(crate) fn finalize(&mut self, job: &Job) {
        let c = &self.connections;
        let mut problems = std::mem::take(&mut self.problems);
        if c.failed > 0 {
            problems.push(format!(
                "{} connection(s) failed: {}",
                c.failed,
                reasons(&c.failures)
            ));
        }
        if c.ended_early > 0 {
            problems.push(format!(
                "{} stream(s) ended before the run closed them: {}",
                c.ended_early,
                reasons(&c.end_reasons)
            ));
        }
        if let Some(p) = &self.publish {
            if p.failed > 0 {
                problems.push(format!(
                    "{} publish(es) not confirmed: {}",
                    p.failed,
                    reasons(&p.errors)
                ));
            }
        }
        if let Some(d) = &self.delivery {
            if d.lost > 0 {
                problems.push(format!(
                    "{} event(s) lost over {} subscriber(s)",
                    d.lost, d.subscribers_with_loss
                ));
            }
            if d.duplicates > 0 {
                problems.push(format!("{} duplicate event(s)", d.duplicates));
            }
            if d.misdirected > 0 {
                problems.push(format!(
                    "{} event(s) delivered to the wrong subscriber",
                    d.misdirected
                ));
            }
            if d.id_regressions > 0 {
                problems.push(format!(
                    "{} event(s) whose id did not grow on their connection",
                    d.id_regressions
                ));
            }
            if d.out_of_order > 0 && job.concurrency == 1 {
                problems.push(format!(
                    "{} event(s) out of order with one publish in flight",
                    d.out_of_order
                ));
            }
            if let Some(n) = d.order_divergent_subscribers.filter(|&n| n > 0) {
                problems.push(format!(
                    "{n} subscriber(s) saw the events in a different order than the others"
                ));
            }
            if !d.complete_in_time && d.lost == 0 {
                problems.push("delivery finished only after the timeout".to_owned());
            }
        }
        self.ok = problems.is_empty();
        self.problems = problems;
    }

    pub(crate) fn human(&self, job: &Job) -> String {
        let mut o = String::new();
        let c = &self.connections;
        let _ = writeln!(
            o,
            "herald-bench {} → {:?} {}",
            self.command,
            self.target,
            self.subscribe_urls.join(", ")
        );
        let _ = writeln!(
            o,
            "  connections  {}/{} ready in {} ({} conn/s) over {} process(es), {} source address(es); {} failed",
            thousands(c.connected),
            thousands(c.requested),
            fmt_secs(c.connect_secs),
            thousands(c.connects_per_sec as u64),
            c.processes,
            c.source_addrs,
            c.failed
        );
        if c.failed > 0 {
            let _ = writeln!(o, "               failures: {}", reasons(&c.failures));
        }
        if let Some(n) = c.listen_overflows.filter(|&n| n > 0) {
            let _ = writeln!(
                o,
                "               {n} SYN(s) dropped on a full listen queue (retried after 1 s): lower --connect-concurrency"
            );
        }
        if c.hold_secs > 0.0 {
            let _ = writeln!(
                o,
                "               held {:.1} s; {} ended early",
                c.hold_secs, c.ended_early
            );
        }
        if let Some(p) = &self.publish {
            let rate = if p.target_rate > 0.0 {
                format!("target {}/s", p.target_rate)
            } else {
                "as fast as accepted".to_owned()
            };
            let _ = writeln!(
                o,
                "  publish      {}/{} confirmed in {}: {} events/s ({rate}, {} in flight); {} failed",
                thousands(p.ok),
                thousands(p.requested),
                fmt_secs(p.secs),
                thousands(p.per_sec as u64),
                p.concurrency,
                p.failed
            );
            let _ = writeln!(
                o,
                "               request→response {}",
                p.latency_us.human()
            );
            if p.failed > 0 {
                let _ = writeln!(o, "               errors: {}", reasons(&p.errors));
            }
        }
        if let Some(d) = &self.delivery {
            let pct = if d.expected > 0 {
                100.0 * (d.expected - d.lost) as f64 / d.expected as f64
            } else {
                100.0
            };
            let _ = writeln!(
                o,
                "  delivery     {}/{} ({pct:.3}%) to {} subscribers; {} deliveries/s over {}",
                thousands(d.expected - d.lost),
                thousands(d.expected),
                thousands(d.subscribers),
                thousands(d.per_sec as u64),
                fmt_secs(d.secs)
            );
            let mut line = format!(
                "               lost {}, duplicates {}, out of order {}{}, misdirected {}",
                d.lost,
                d.duplicates,
                d.out_of_order,
                if job.concurrency > 1 {
                    " (publishes race)"
                } else {
                    ""
                },
                d.misdirected
            );
            if let Some(n) = d.order_divergent_subscribers {
                let _ = write!(line, ", order divergent {n}");
            }
            let _ = write!(line, ", ids not growing {}", d.id_regressions);
            let _ = writeln!(o, "{line}");
            let _ = writeln!(o, "  latency      publish→receive {}", d.latency_us.human());
        }
        if let Some(s) = &self.server {
            let mib = |k: Option<u64>| {
                k.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
            };
            let mut line = format!(
                "  server       pid {:?}: RSS idle {}, connected {}",
                s.pids,
                mib(s.rss_kib_idle),
                mib(s.rss_kib_connected)
            );
            if let Some(k) = s.rss_kib_per_connection {
                let _ = write!(line, " ({k:.2} KiB/connection)");
            }
            if s.rss_kib_after_delivery.is_some() {
                let _ = write!(line, ", after delivery {}", mib(s.rss_kib_after_delivery));
            }
            if s.rss_kib_after_close.is_some() {
                let _ = write!(line, ", after close {}", mib(s.rss_kib_after_close));
            }
            let _ = writeln!(o, "{line}");
            if let (Some(cpu), Some(per)) = (s.connect_cpu_secs, s.connect_cpu_us_per_connection) {
                let _ = writeln!(
                    o,
                    "               CPU {cpu:.2} s to connect ({per:.1} µs/connection)"
                );
            }
            if let Some(cpu) = s.publish_cpu_secs {
                let per = s
                    .cpu_secs_per_million_deliveries
                    .map_or(String::new(), |p| per_delivery(job, p));
                let _ = writeln!(
                    o,
                    "               CPU {cpu:.2} s publishing and delivering{per}"
                );
            }
        }
        if let Some(st) = &self.server_stats {
            let show = |v: Option<u64>| v.map_or("?".to_owned(), thousands);
            let _ = writeln!(
                o,
                "  hub stats    connections {} → {}, eventsDelivered +{}, evictedSlowConsumers +{}",
                show(st.connections_before),
                show(st.connections_after),
                show(st.events_delivered),
                show(st.evicted_slow_consumers)
            );
        }
        if let Some(cl) = &self.client {
            if let (Some(rss), Some(per)) = (cl.rss_kib_connected, cl.rss_kib_per_connection) {
                let _ = writeln!(
                    o,
                    "  client       RSS connected {:.1} MiB ({per:.2} KiB/connection, baseline included; {} process(es))",
                    rss as f64 / 1024.0,
                    cl.pids.len()
                );
            }
            if let Some(cpu) = cl.publish_cpu_secs {
                let per = cl
                    .cpu_secs_per_million_deliveries
                    .map_or(String::new(), |p| per_delivery(job, p));
                let _ = writeln!(
                    o,
                    "  client       CPU {cpu:.2} s publishing and receiving{per} ({} process(es))",
                    cl.pids.len()
                );
            }
        }
        if self.ok {
            let _ = writeln!(o, "  result       OK in {:.1} s", self.elapsed_secs);
        } else {
            let _ = writeln!(o, "  result       PROBLEMS ({:.1} s):", self.elapsed_secs);
            for p in &self.problems {
                let _ = writeln!(o, "               - {p}");
            }
        }
        o
    }
}
