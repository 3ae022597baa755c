//! The publisher: sends numbered, timestamped events over keep-alive HTTP/1.1 connections, as
//! fast as they are accepted (with a fixed number in flight) or at a fixed rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::http::{self, Client};
use crate::target::{BodyMode, Endpoint, Name, Vars};
use crate::track::target_user;
use crate::util::{json_str_field, json_u64_field, new_histogram, now_us};

/// Who each event goes to.
#[derive(Debug, Clone)]
pub(crate) enum Routing {
    /// Every event to one channel.
    Channel(String),
    /// Event `n` to user `<prefix><target_user(seed, n, users)>` (and that user's channel).
    Users {
        prefix: String,
        users: u64,
        seed: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct PublishPlan {
    pub(crate) urls: Vec<Endpoint>,
    pub(crate) body: BodyMode,
    pub(crate) event_name: String,
    pub(crate) routing: Routing,
    /// Extra request headers (the publisher key among them).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) events: u64,
    /// Events per second; 0 = as fast as accepted.
    pub(crate) rate: f64,
    pub(crate) concurrency: usize,
    /// Events per request: above 1, a JSON array to the batch endpoint (`…/messages`).
    pub(crate) batch: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) request_timeout: Duration,
    /// No event is sent after this.
    pub(crate) deadline: Instant,
}

/// What the publisher did.
#[derive(Debug)]
pub(crate) struct PublishOutcome {
    /// Sequence numbers `0..issued` were handed out.
    pub(crate) issued: u64,
    /// Events every publish URL confirmed with a 2xx.
    pub(crate) ok: u64,
    /// Handed out but not confirmed (error, timeout, or not sent before the deadline); sorted.
    pub(crate) failed: Vec<u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) requests: u64,
    pub(crate) first_send_us: u64,
    pub(crate) last_ack_us: u64,
    /// First send to last answer.
    pub(crate) elapsed: Duration,
    /// Request-to-response latency of confirmed requests (µs).
    pub(crate) latency: Histogram<u64>,
    /// Sum of the `delivered` counts the server answered (Herald).
    pub(crate) server_delivered: Option<u64>,
    pub(crate) connections: u64,
}

struct SlotOutcome {
    ok: u64,
    failed: Vec<u64>,
    errors: BTreeMap<String, u64>,
    requests: u64,
    first_send: Option<(Instant, u64)>,
    last_ack: Option<(Instant, u64)>,
    latency: Histogram<u64>,
    delivered: Option<u64>,
    connections: u64,
}

/// Publishes `plan.events` events; `acked` counts confirmed ones as they come (for progress).
pub(crate) async fn publish(plan: Arc<PublishPlan>, acked: Arc<AtomicU64>) -> PublishOutcome {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let pad: Arc<[u8]> = vec![b'x'; plan.payload_bytes].into();
    let slots: Vec<_> = (0..plan.concurrency.max(1))
        .map(|_| {
            tokio::spawn(slot(
                plan.clone(),
                next.clone(),
                start,
                acked.clone(),
                pad.clone(),
            ))
        })
        .collect();
    let mut out = PublishOutcome {
        issued: 0,
        ok: 0,
        failed: Vec::new(),
        errors: BTreeMap::new(),
        requests: 0,
        first_send_us: 0,
        last_ack_us: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        server_delivered: None,
        connections: 0,
    };
    let mut first: Option<(Instant, u64)> = None;
    let mut last: Option<(Instant, u64)> = None;
    for s in slots {
        let s = match s.await {
            Ok(s) => s,
            Err(e) => {
                *out.errors
                    .entry(format!("publisher task: {e}"))
                    .or_default() += 1;
                continue;
            }
        };
        out.ok += s.ok;
        out.failed.extend(s.failed);
        for (k, v) in s.errors {
            *out.errors.entry(k).or_default() += v;
        }
        out.requests += s.requests;
        out.connections += s.connections;
        out.latency.add(&s.latency).ok();
        if let Some(d) = s.delivered {
            *out.server_delivered.get_or_insert(0) += d;
        }
        if s.first_send
            .is_some_and(|f| first.is_none_or(|g| f.0 < g.0))
        {
            first = s.first_send;
        }
        if s.last_ack.is_some_and(|f| last.is_none_or(|g| f.0 > g.0)) {
            last = s.last_ack;
        }
    }
    out.issued = next.load(Relaxed).min(plan.events);
    out.failed.sort_unstable();
    out.failed.dedup();
    if let (Some(f), Some(l)) = (first, last) {
        out.first_send_us = f.1;
        out.last_ack_us = l.1;
        out.elapsed = l.0.saturating_duration_since(f.0);
    }
    out
}

async fn slot(
    plan: Arc<PublishPlan>,
    next: Arc<AtomicU64>,
    start: Instant,
    acked: Arc<AtomicU64>,
    pad: Arc<[u8]>,
) -> SlotOutcome {
    let mut clients: Vec<Client> = plan.urls.iter().map(|u| Client::new(u.addr)).collect();
    let mut o = SlotOutcome {
        ok: 0,
        failed: Vec::new(),
        errors: BTreeMap::new(),
        requests: 0,
        first_send: None,
        last_ack: None,
        latency: new_histogram(),
        delivered: None,
        connections: 0,
    };
    let mut body = Vec::with_capacity(plan.payload_bytes + 256);
    let mut request = Vec::with_capacity(plan.payload_bytes + 1024);
    let mut path = Vec::with_capacity(128);
    let batch = plan.batch.max(1) as u64;
    loop {
        let first = next.fetch_add(batch, Relaxed);
        if first >= plan.events {
            break;
        }
        let seqs = first..(first + batch).min(plan.events);
        if plan.rate > 0.0 {
            let at = start + Duration::from_secs_f64(first as f64 / plan.rate);
            if at >= plan.deadline {
                o.failed.extend(seqs.clone());
                *o.errors
                    .entry("not sent before the timeout".into())
                    .or_default() += seqs.end - seqs.start;
                break;
            }
            tokio::time::sleep_until(at).await;
        }
        if Instant::now() >= plan.deadline {
            o.failed.extend(seqs.clone());
            *o.errors
                .entry("not sent before the timeout".into())
                .or_default() += seqs.end - seqs.start;
            break;
        }
        let mut failed: Vec<u64> = Vec::new();
        for (url, client) in plan.urls.iter().zip(clients.iter_mut()) {
            let ts = now_us();
            body.clear();
            path.clear();
            if batch > 1 {
                body.push(b'[');
            }
            for n in seqs.clone() {
                let vars = vars_of(&plan.routing, n);
                if n == seqs.start {
                    url.write_path(&mut path, &vars);
                } else {
                    body.push(b',');
                }
                write_body(&mut body, &plan, &vars, n, ts, &pad);
            }
            if batch > 1 {
                body.push(b']');
                // The batch endpoint of a `/message` URL (checked when the job was made).
                path.push(b's');
            }
            request.clear();
            http::write_request(
                &mut request,
                "POST",
                &url.host,
                &path,
                &plan.headers,
                Some((plan.body.content_type(), &body)),
            );
            let sent = Instant::now();
            if o.first_send.is_none() {
                o.first_send = Some((sent, ts));
            }
            o.requests += 1;
            match client.send(&request, plan.request_timeout).await {
                Ok(status) if (200..300).contains(&status) && batch > 1 => {
                    o.latency
                        .saturating_record((sent.elapsed().as_micros() as u64).max(1));
                    match batch_results(&client.body, seqs.end - seqs.start) {
                        Ok((delivered, errors)) => {
                            *o.delivered.get_or_insert(0) += delivered;
                            for (i, code) in errors {
                                failed.push(seqs.start + i);
                                *o.errors.entry(format!("batch item {code}")).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            failed.extend(seqs.clone());
                            *o.errors.entry(format!("batch answer: {e}")).or_default() += 1;
                        }
                    }
                }
                Ok(status) if (200..300).contains(&status) => {
                    o.latency
                        .saturating_record((sent.elapsed().as_micros() as u64).max(1));
                    if let Some(d) = json_u64_field(&client.body, "delivered") {
                        *o.delivered.get_or_insert(0) += d;
                    }
                }
                Ok(status) => {
                    failed.extend(seqs.clone());
                    let code = json_str_field(&client.body, "code")
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default();
                    *o.errors.entry(format!("HTTP {status}{code}")).or_default() += 1;
                }
                Err(e) => {
                    failed.extend(seqs.clone());
                    *o.errors.entry(format!("publish: {e}")).or_default() += 1;
                }
            }
        }
        o.last_ack = Some((Instant::now(), now_us()));
        failed.sort_unstable();
        failed.dedup();
        let ok = (seqs.end - seqs.start) - failed.len() as u64;
        o.ok += ok;
        acked.fetch_add(ok, Relaxed);
        o.failed.extend(failed);
    }
    o.connections = clients.iter().map(|c| c.connects).sum();
    o
}

/// Where event `n` goes.
fn vars_of(routing: &Routing, n: u64) -> Vars<'_> {
    match routing {
        Routing::Channel(c) => Vars {
            channel: Name::fixed(c),
            user: Name::fixed(""),
            index: n,
        },
        Routing::Users {
            prefix,
            users,
            seed,
        } => {
            let name = Name::numbered(prefix, target_user(*seed, n, *users));
            Vars {
                channel: name,
                user: name,
                index: n,
            }
        }
    }
}

/// Reads a batch answer `{"results": [{"id", "delivered"} | {"error": {"code"}}, ...]}`: the
/// sum of `delivered`, and the index and code of every item that failed (or was missing).
fn batch_results(body: &[u8], items: u64) -> Result<(u64, Vec<(u64, String)>), String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let results = v["results"]
        .as_array()
        .ok_or_else(|| "no results array".to_owned())?;
    let mut delivered = 0;
    let mut errors = Vec::new();
    for i in 0..items {
        match results.get(i as usize) {
            Some(r) if r.get("error").is_none() => {
                delivered += r["delivered"].as_u64().unwrap_or(0);
            }
            Some(r) => errors.push((
                i,
                r["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
            )),
            None => errors.push((i, "missing".to_owned())),
        }
    }
    Ok((delivered, errors))
}

/// The benchmark payload: `{"seq":N,"ts":T,"pad":"xxx…"}`, padded to `payload_bytes` in all.
pub(crate) fn write_payload(
    out: &mut Vec<u8>,
    seq: u64,
    ts: u64,
    payload_bytes: usize,
    pad: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    out.extend_from_slice(b",\"pad\":\"");
    let used = out.len() - start + 2;
    let fill = payload_bytes.saturating_sub(used).min(pad.len());
    out.extend_from_slice(&pad[..fill]);
    out.extend_from_slice(b"\"}");
}

fn write_body(
    out: &mut Vec<u8>,
    plan: &PublishPlan,
    vars: &Vars<'_>,
    seq: u64,
    ts: u64,
    pad: &[u8],
) {
    match plan.body {
        BodyMode::Raw => write_payload(out, seq, ts, plan.payload_bytes, pad),
        BodyMode::Mercure => {
            // A Mercure update: the channel (or user) is the topic, the event name its `type`.
            out.extend_from_slice(b"topic=");
            let mut name = Vec::new();
            match plan.routing {
                Routing::Channel(_) => vars.channel.write_to(&mut name),
                Routing::Users { .. } => vars.user.write_to(&mut name),
            }
            form_escape(out, &name);
            out.extend_from_slice(b"&type=");
            form_escape(out, plan.event_name.as_bytes());
            out.extend_from_slice(b"&data=");
            let mut data = Vec::with_capacity(plan.payload_bytes + 64);
            write_payload(&mut data, seq, ts, plan.payload_bytes, pad);
            form_escape(out, &data);
        }
        BodyMode::Herald => {
            out.extend_from_slice(b"{\"event\":\"");
            out.extend_from_slice(plan.event_name.as_bytes());
            out.extend_from_slice(b"\",\"data\":");
            write_payload(out, seq, ts, plan.payload_bytes, pad);
            match plan.routing {
                Routing::Channel(_) => {
                    out.extend_from_slice(b",\"channels\":[\"");
                    vars.channel.write_to(out);
                }
                Routing::Users { .. } => {
                    out.extend_from_slice(b",\"users\":[\"");
                    vars.user.write_to(out);
                }
            }
            out.extend_from_slice(b"\"]}");
        }
    }
}

/// `bytes` as an `application/x-www-form-urlencoded` value: letters, digits and `*-._` stay,
/// everything else is `%XX`.
fn form_escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mercure_bodies_are_forms() {
        let mut p = plan(BodyMode::Mercure, Routing::Channel("news".into()));
        p.event_name = "bench".into();
        let vars = Vars {
            channel: Name::fixed("news"),
            user: Name::fixed("u1"),
            index: 0,
        };
        let mut out = Vec::new();
        write_body(&mut out, &p, &vars, 7, 9, b"xx");
        let fields: Vec<(String, String)> = url_pairs(&out);
        assert_eq!(fields[0], ("topic".into(), "news".into()));
        assert_eq!(fields[1], ("type".into(), "bench".into()));
        assert_eq!(fields[2].0, "data");
        let v: serde_json::Value = serde_json::from_str(&fields[2].1).unwrap();
        assert_eq!((v["seq"].as_u64(), v["ts"].as_u64()), (Some(7), Some(9)));
        assert_eq!(
            BodyMode::Mercure.content_type(),
            "application/x-www-form-urlencoded"
        );
    }

    fn url_pairs(body: &[u8]) -> Vec<(String, String)> {
        let text = std::str::from_utf8(body).unwrap();
        text.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (unescape(k), unescape(v))
            })
            .collect()
    }

    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn payload_is_padded_to_size() {
        let pad = vec![b'x'; 1000];
        for size in [0, 10, 150, 151, 999] {
            let mut out = Vec::new();
            write_payload(&mut out, 123, 1_700_000_000_000_000, size, &pad);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["seq"], 123);
            assert_eq!(v["ts"], 1_700_000_000_000_000u64);
            let min = br#"{"seq":123,"ts":1700000000000000,"pad":""}"#.len();
            assert_eq!(out.len(), size.max(min), "size {size}");
        }
    }

    fn plan(body: BodyMode, routing: Routing) -> PublishPlan {
        PublishPlan {
            urls: vec![],
            body,
            event_name: "bench".into(),
            routing,
            headers: vec![],
            events: 1,
            rate: 0.0,
            concurrency: 1,
            batch: 1,
            payload_bytes: 0,
            request_timeout: Duration::from_secs(1),
            deadline: Instant::now(),
        }
    }

    #[test]
    fn herald_bodies() {
        let pad = [b'x'; 8];
        let p = plan(BodyMode::Herald, Routing::Channel("news".into()));
        let vars = Vars {
            channel: Name::fixed("news"),
            user: Name::fixed(""),
            index: 0,
        };
        let mut out = Vec::new();
        write_body(&mut out, &p, &vars, 5, 9, &pad);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "bench", "data": {"seq": 5, "ts": 9, "pad": ""}, "channels": ["news"]})
        );

        let p = plan(
            BodyMode::Herald,
            Routing::Users {
                prefix: "u".into(),
                users: 10,
                seed: 1,
            },
        );
        let vars = Vars {
            channel: Name::numbered("u", 7),
            user: Name::numbered("u", 7),
            index: 0,
        };
        out.clear();
        write_body(&mut out, &p, &vars, 5, 9, &pad);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["users"], serde_json::json!(["u7"]));

        let p = plan(BodyMode::Raw, Routing::Channel("news".into()));
        out.clear();
        write_body(&mut out, &p, &vars, 5, 9, &pad);
        assert_eq!(out, br#"{"seq":5,"ts":9,"pad":""}"#);
    }
}
