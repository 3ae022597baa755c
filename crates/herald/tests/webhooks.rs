//! Inbound webhooks against the real `herald` binary: a TOML file written here configures three
//! sources (Standard Webhooks, GitHub, Stripe); deliveries are signed here with the providers'
//! algorithms (written again, independently of the hub's code) and their events checked on real
//! SSE subscribers. Every replay is followed by a marker to prove nothing arrived twice. One test
//! runs the hub in process, to fail its engine between the two events of one delivery.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald::broker::{Broker, Delivery, MemoryBroker, Publication, Published};
use herald::engine::{Engine, EngineError, EngineHealth};
use herald::history::{HistoryLimits, HistoryStats, Replay, ReplayCap, ReplayFilter};
use herald::{EventId, Lifecycle};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use redis_support::RedisServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use support::{HeraldProcess, SseClient, WAIT};

const STANDARD_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GITHUB_SECRET: &str = "gh-webhook-secret-for-tests";
const STRIPE_SECRET: &str = "whsec_stripe_test_0123456789";

/// The rotated-in Standard Webhooks secret: `whsec_` + base64 of 24 bytes.
fn standard_new() -> String {
    format!("whsec_{}", B64.encode(b"the second secret, 24 b!"))
}

fn config_text() -> String {
    format!(
        r#"
[[webhooks]]
name = "payments"
scheme = "standard-webhooks"
secrets = ["{STANDARD_OLD}", "{new}"]

[[webhooks.rules]]
when = {{ "/type" = "payment.succeeded" }}
event = "payment"
users = "/data/customerId"
data = "/data"

[[webhooks.rules]]
when = {{ "/type" = "payout.paid" }}
event = "payout"
users = "/data/recipients"
data = {{ amount = "{{/data/amount}}", text = "Payout of {{/data/amount}} {{/data/currency}}" }}

[[webhooks.rules]]
when = {{ "/type" = "order.shipped" }}
event = "order"
channels = ["orders:{{/data/orderId}}"]

[[webhooks.rules]]
when = {{ "/type" = "maintenance" }}
event = "notice"
broadcast = true

[[webhooks]]
name = "github"
scheme = "github"
secrets = ["{GITHUB_SECRET}"]

[[webhooks.rules]]
when_headers = {{ "X-GitHub-Event" = "push" }}
event = "push"
channels = "/repository/name"
data = {{ ref = "{{/ref}}", by = "{{/pusher/name}}" }}

[[webhooks]]
name = "stripe"
scheme = "stripe"
secrets = ["whsec_the_old_one_still_configured", "{STRIPE_SECRET}"]
max_body_size = "2KiB"

[[webhooks.rules]]
when = {{ "/type" = "invoice.paid" }}
event = "invoice"
user = "/data/object/metadata/userId"
data = "/data/object"
"#,
        new = standard_new()
    )
}

/// A directory for this test's files, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "herald-webhooks-{what}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(extra: &[&str]) -> (HeraldProcess, TempDir) {
    let dir = TempDir::new("hub");
    let file = dir.write("herald.toml", &config_text());
    let mut args = vec!["--config", file.as_str()];
    args.extend_from_slice(extra);
    (HeraldProcess::start(&args, &[]).await, dir)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hmac(key: &[u8], content: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(content);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard Webhooks headers for `body`, signed with `secret` (`whsec_<base64>`).
fn standard_headers(secret: &str, id: &str, ts: u64, body: &str) -> Vec<(String, String)> {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let sig = B64.encode(hmac(&key, format!("{id}.{ts}.{body}").as_bytes()));
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), format!("v1,{sig}")),
    ]
}

fn github_headers(secret: &str, delivery: &str, event: &str, body: &str) -> Vec<(String, String)> {
    vec![
        ("x-github-event".into(), event.into()),
        ("x-github-delivery".into(), delivery.into()),
        (
            "x-hub-signature-256".into(),
            format!("sha256={}", hex(&hmac(secret.as_bytes(), body.as_bytes()))),
        ),
    ]
}

fn stripe_headers(secret: &str, ts: u64, body: &str) -> Vec<(String, String)> {
    let sig = hex(&hmac(secret.as_bytes(), format!("{ts}.{body}").as_bytes()));
    vec![("stripe-signature".into(), format!("t={ts},v1={sig}"))]
}

/// `POST base/api/webhooks/name`: status, JSON answer, and the `Idempotent-Replayed` header.
async fn deliver(
    base: &str,
    name: &str,
    headers: &[(String, String)],
    body: &str,
) -> (StatusCode, Value, bool) {
    let mut req = support::http_client()
        .post(format!("{base}/api/webhooks/{name}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let response = support::send(req).await;
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let (status, answer) = support::read_json(response).await;
    (status, answer, replayed)
}

async fn subscribe(base: &str, query: &str) -> SseClient {
    let response =
        support::send(support::http_client().get(format!("{base}/api/sse?{query}"))).await;
    assert_eq!(response.status(), StatusCode::OK, "subscribe {query}");
    SseClient::open(response).await
}

/// Publishes a `marker` event to `users` through the publish API.
async fn marker(base: &str, body: Value) {
    let response = support::send(
        support::http_client()
            .post(format!("{base}/api/sse/message"))
            .json(&body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Every event (name, data) before the `marker`.
async fn until_marker(client: &mut SseClient) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    loop {
        let e = client.next_event().await;
        if e.event == "marker" {
            return seen;
        }
        seen.push((e.event.clone(), serde_json::from_str(&e.data).unwrap()));
    }
}

async fn metrics(base: &str) -> String {
    let r = support::send(support::http_client().get(format!("{base}/metrics"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no metric {line_start} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn standard_webhooks_verify_rotate_dedupe_and_refuse() {
    let (hub, _dir) = start(&[]).await;
    let base = format!("http://{}", hub.addr);
    let mut alice = subscribe(&base, "userId=alice").await;

    let body =
        json!({"type": "payment.succeeded", "data": {"customerId": "alice", "amount": 1200}})
            .to_string();
    // Signed with the first secret.
    let (status, first, replayed) = deliver(
        &base,
        "payments",
        &standard_headers(STANDARD_OLD, "msg_1", now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed);
    let list = first["published"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{first}");
    assert_eq!(list[0]["delivered"], 1);
    assert!(list[0]["id"].is_string());
    assert_eq!(
        first.as_object().unwrap().len(),
        1,
        "only `published`: {first}"
    );

    // The rotated-in secret, another delivery.
    let body2 = json!({"type": "payment.succeeded", "data": {"customerId": "alice", "amount": 5}})
        .to_string();
    let (status, second, _) = deliver(
        &base,
        "payments",
        &standard_headers(&standard_new(), "msg_2", now(), &body2),
        &body2,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["published"][0]["id"], first["published"][0]["id"]);

    // The provider retries msg_1 (newly signed, as providers do): the first answer, nothing sent.
    let (status, again, replayed) = deliver(
        &base,
        "payments",
        &standard_headers(STANDARD_OLD, "msg_1", now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed);
    assert_eq!(again, first);

    // Refusals: too old, too far ahead, tampered, wrong secret, unsigned.
    let old = standard_headers(STANDARD_OLD, "msg_3", now() - 600, &body);
    let (status, e, _) = deliver(&base, "payments", &old, &body).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_timestamp")),
        "{e}"
    );
    let ahead = standard_headers(STANDARD_OLD, "msg_3", now() + 600, &body);
    let (status, e, _) = deliver(&base, "payments", &ahead, &body).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_timestamp"))
    );
    let signed = standard_headers(STANDARD_OLD, "msg_4", now(), &body);
    let tampered = body.replace("1200", "9999");
    let (status, e, _) = deliver(&base, "payments", &signed, &tampered).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature")),
        "{e}"
    );
    let wrong = format!("whsec_{}", B64.encode(b"not the secret of this hub"));
    let (status, e, _) = deliver(
        &base,
        "payments",
        &standard_headers(&wrong, "msg_5", now(), &body),
        &body,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let (status, e, _) = deliver(&base, "payments", &[], &body).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_signature"))
    );
    // A replayed id with a stale timestamp is refused as stale, not answered.
    let (status, _, _) = deliver(
        &base,
        "payments",
        &standard_headers(STANDARD_OLD, "msg_1", now() - 600, &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Unmapped: acknowledged, nothing published. Mapped but without its target: the same.
    let unmapped = json!({"type": "customer.created", "data": {}}).to_string();
    let (status, answer, _) = deliver(
        &base,
        "payments",
        &standard_headers(STANDARD_OLD, "msg_6", now(), &unmapped),
        &unmapped,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["published"], json!([]));
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("customer.created"),
        "{answer}"
    );
    let no_user = json!({"type": "payment.succeeded", "data": {"amount": 1}}).to_string();
    let (status, answer, _) = deliver(
        &base,
        "payments",
        &standard_headers(STANDARD_OLD, "msg_7", now(), &no_user),
        &no_user,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("/data/customerId"),
        "{answer}"
    );

    // Alice got each payment once, with the rule's data.
    marker(
        &base,
        json!({"event": "marker", "data": {}, "users": ["alice"]}),
    )
    .await;
    let seen = until_marker(&mut alice).await;
    assert_eq!(
        seen,
        vec![
            (
                "payment".to_owned(),
                json!({"customerId": "alice", "amount": 1200})
            ),
            (
                "payment".to_owned(),
                json!({"customerId": "alice", "amount": 5})
            ),
        ]
    );

    // Unknown name; GET is not a delivery.
    let (status, e, _) = deliver(&base, "nope", &[], "{}").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_webhook"))
    );
    let r =
        support::send(support::http_client().get(format!("{base}/api/webhooks/payments"))).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    let m = metrics(&base).await;
    assert_eq!(
        metric(&m, "herald_webhook_accepted_total{webhook=\"payments\"}"),
        2
    );
    assert_eq!(
        metric(&m, "herald_webhook_duplicates_total{webhook=\"payments\"}"),
        1
    );
    assert_eq!(
        metric(&m, "herald_webhook_ignored_total{webhook=\"payments\"}"),
        2
    );
    assert_eq!(
        metric(&m, "herald_webhook_events_total{webhook=\"payments\"}"),
        2
    );
    for (reason, n) in [
        ("stale_timestamp", 3),
        ("invalid_signature", 2),
        ("missing_signature", 1),
    ] {
        let line =
            format!("herald_webhook_refused_total{{webhook=\"payments\",reason=\"{reason}\"}}");
        assert_eq!(metric(&m, &line), n, "{reason}");
    }
    assert_eq!(metric(&m, "herald_webhook_unknown_total"), 1);
    assert_eq!(
        metric(&m, "herald_webhook_accepted_total{webhook=\"github\"}"),
        0
    );
}

#[tokio::test]
async fn rules_reach_users_a_user_list_channels_and_everyone() {
    let (hub, _dir) = start(&[]).await;
    let base = format!("http://{}", hub.addr);
    let mut bob = subscribe(&base, "userId=bob").await;
    let mut carol = subscribe(&base, "userId=carol").await;
    let mut dave = subscribe(&base, "userId=dave&channels=orders:42").await;
    let sign = |id: &str, body: &str| standard_headers(STANDARD_OLD, id, now(), body);

    let payout = json!({"type": "payout.paid", "data": {"recipients": ["bob", "carol"], "amount": 30, "currency": "EUR"}}).to_string();
    let (status, a, _) = deliver(&base, "payments", &sign("p1", &payout), &payout).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["published"][0]["delivered"], 2);
    let order = json!({"type": "order.shipped", "data": {"orderId": 42}}).to_string();
    let (status, a, _) = deliver(&base, "payments", &sign("o1", &order), &order).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["published"][0]["delivered"], 1);
    let notice = json!({"type": "maintenance", "at": "tonight"}).to_string();
    let (status, a, _) = deliver(&base, "payments", &sign("m1", &notice), &notice).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["published"][0]["delivered"], 3);

    marker(
        &base,
        json!({"event": "marker", "data": {}, "broadcast": true}),
    )
    .await;
    let payout_data = json!({"amount": 30, "text": "Payout of 30 EUR"});
    let notice_data: Value = serde_json::from_str(&notice).unwrap();
    for client in [&mut bob, &mut carol] {
        assert_eq!(
            until_marker(client).await,
            vec![
                ("payout".to_owned(), payout_data.clone()),
                ("notice".to_owned(), notice_data.clone())
            ]
        );
    }
    assert_eq!(
        until_marker(&mut dave).await,
        vec![
            (
                "order".to_owned(),
                json!({"type": "order.shipped", "data": {"orderId": 42}})
            ),
            ("notice".to_owned(), notice_data)
        ]
    );
}

#[tokio::test]
async fn github_and_stripe_signatures() {
    let (hub, _dir) = start(&[]).await;
    let base = format!("http://{}", hub.addr);
    let mut ops = subscribe(&base, "userId=ops&channels=herald").await;
    let mut erin = subscribe(&base, "userId=erin").await;

    // GitHub: the delivery id de-duplicates; the event header picks the rule.
    let push = json!({"ref": "refs/heads/main", "repository": {"name": "herald"}, "pusher": {"name": "octocat"}}).to_string();
    let h = github_headers(GITHUB_SECRET, "d-1", "push", &push);
    let (status, first, _) = deliver(&base, "github", &h, &push).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again, replayed) = deliver(&base, "github", &h, &push).await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(again, first);
    let (status, answer, _) = deliver(
        &base,
        "github",
        &github_headers(GITHUB_SECRET, "d-2", "issues", &push),
        &push,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["ignored"].is_string(), "{answer}");
    let (status, e, _) = deliver(&base, "github", &h, &push.replace("main", "evil")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    let (status, e, _) = deliver(
        &base,
        "github",
        &github_headers("wrong", "d-3", "push", &push),
        &push,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{e}");

    // Stripe: the second configured secret signs; the event id in the body de-duplicates, even
    // when the retry carries a new timestamp and signature.
    let invoice = json!({"id": "evt_1", "type": "invoice.paid", "data": {"object": {"amount_paid": 900, "metadata": {"userId": "erin"}}}}).to_string();
    let (status, first, _) = deliver(
        &base,
        "stripe",
        &stripe_headers(STRIPE_SECRET, now(), &invoice),
        &invoice,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["published"][0]["delivered"], 1);
    let (status, again, replayed) = deliver(
        &base,
        "stripe",
        &stripe_headers(STRIPE_SECRET, now() - 10, &invoice),
        &invoice,
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(again, first);
    let (status, e, _) = deliver(
        &base,
        "stripe",
        &stripe_headers(STRIPE_SECRET, now() - 301, &invoice),
        &invoice,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_timestamp"))
    );
    let (status, e, _) = deliver(
        &base,
        "stripe",
        &stripe_headers(STRIPE_SECRET, now(), &invoice),
        &invoice.replace("900", "1"),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_signature"))
    );
    // Over this source's 2 KiB limit.
    let big = json!({"id": "evt_2", "type": "invoice.paid", "pad": "x".repeat(4096)}).to_string();
    let (status, e, _) = deliver(
        &base,
        "stripe",
        &stripe_headers(STRIPE_SECRET, now(), &big),
        &big,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    // The same event id with other (signed) content: a conflict, nothing published.
    let changed = invoice.replace("900", "901");
    let (status, e, _) = deliver(
        &base,
        "stripe",
        &stripe_headers(STRIPE_SECRET, now(), &changed),
        &changed,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("webhook_id_reused"))
    );

    marker(
        &base,
        json!({"event": "marker", "data": {}, "broadcast": true}),
    )
    .await;
    assert_eq!(
        until_marker(&mut ops).await,
        vec![(
            "push".to_owned(),
            json!({"ref": "refs/heads/main", "by": "octocat"})
        )]
    );
    assert_eq!(
        until_marker(&mut erin).await,
        vec![(
            "invoice".to_owned(),
            json!({"amount_paid": 900, "metadata": {"userId": "erin"}})
        )]
    );
    let m = metrics(&base).await;
    assert_eq!(
        metric(
            &m,
            "herald_webhook_refused_total{webhook=\"stripe\",reason=\"payload_too_large\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "herald_webhook_refused_total{webhook=\"stripe\",reason=\"id_reused\"}"
        ),
        1
    );
}

#[tokio::test]
async fn publisher_keys_do_not_guard_webhooks_and_rate_limits_do() {
    let dir = TempDir::new("keys");
    let text = config_text().replace(
        "name = \"github\"\nscheme = \"github\"\n",
        "name = \"github\"\nscheme = \"github\"\nrate = \"1/s:2\"\n",
    );
    let file = dir.write("herald.toml", &text);
    let hub = HeraldProcess::start(
        &["--config", &file, "--publisher-key", "0123456789abcdef0123"],
        &[],
    )
    .await;
    let base = format!("http://{}", hub.addr);
    let push =
        json!({"ref": "r", "repository": {"name": "herald"}, "pusher": {"name": "x"}}).to_string();
    // Forged deliveries are refused before the rate limit: they do not use up the source's
    // budget.
    for i in 0..5 {
        let h = github_headers("forged", &format!("f-{i}"), "push", &push);
        let (status, _, _) = deliver(&base, "github", &h, &push).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // No Authorization header: the signature is the authentication.
    for i in 0..2 {
        let h = github_headers(GITHUB_SECRET, &format!("k-{i}"), "push", &push);
        let (status, a, _) = deliver(&base, "github", &h, &push).await;
        assert_eq!(status, StatusCode::OK, "{a}");
    }
    let h = github_headers(GITHUB_SECRET, "k-2", "push", &push);
    let (status, e, _) = deliver(&base, "github", &h, &push).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    // The publish API still needs its key.
    let r = support::send(
        support::http_client()
            .post(format!("{base}/api/sse/message"))
            .json(&json!({"data": 1, "broadcast": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_webhook_configuration_fails_at_startup_naming_the_webhook_and_field() {
    let dir = TempDir::new("invalid");
    let cases = [
        (
            config_text().replace("scheme = \"stripe\"", "scheme = \"paypal\""),
            "webhooks \"stripe\": scheme: unknown scheme \"paypal\"",
        ),
        (
            config_text().replace(
                "users = \"/data/customerId\"",
                "users = \"data/customerId\"",
            ),
            "webhooks \"payments\": rules[0].users:",
        ),
        (
            config_text().replace(&format!("secrets = [\"{GITHUB_SECRET}\"]"), "secrets = []"),
            "webhooks \"github\": secrets:",
        ),
        (
            format!("idempotency_window = \"1m\"\n{}", config_text()),
            "webhooks \"payments\": tolerance: 5m is longer than idempotency_window (1m)",
        ),
        (
            config_text().replace(
                "event = \"invoice\"",
                "event = \"invoice\"\ncolour = \"red\"",
            ),
            "unknown field `colour`",
        ),
    ];
    for (text, expected) in cases {
        let file = dir.write("bad.toml", &text);
        let out = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args(["--listen", "127.0.0.1:0", "--config", &file])
                .env("NO_COLOR", "1")
                .output(),
        )
        .await
        .expect("herald did not exit")
        .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

/// Two nodes of a cluster on a real `redis-server`: the provider's retry lands on the other
/// node, which answers the first answer and publishes nothing; with Redis gone, `503`.
#[tokio::test]
async fn a_delivery_is_processed_once_across_a_redis_cluster() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let prefix = format!("wh-{:08x}", rand::random::<u32>());
    let common = ["--engine", url.as_str(), "--redis-prefix", prefix.as_str()];
    let mut args_a = common.to_vec();
    args_a.extend(["--node-id", "a"]);
    let mut args_b = common.to_vec();
    args_b.extend(["--node-id", "b"]);
    let (a, _da) = start(&args_a).await;
    let (b, _db) = start(&args_b).await;
    let base_a = format!("http://{}", a.addr);
    let base_b = format!("http://{}", b.addr);
    let mut on_a = subscribe(&base_a, "userId=alice").await;
    let mut on_b = subscribe(&base_b, "userId=alice").await;
    // Until both nodes count both connections, `delivered` may still say 1.
    tokio::time::timeout(WAIT, async {
        loop {
            let r =
                support::send(support::http_client().get(format!("{base_a}/api/sse/stats"))).await;
            let stats: Value = r.json().await.unwrap();
            if stats["cluster"]["connections"] == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the cluster did not see both connections");

    let body = json!({"type": "payment.succeeded", "data": {"customerId": "alice", "amount": 7}})
        .to_string();
    let (status, first, _) = deliver(
        &base_a,
        "payments",
        &standard_headers(STANDARD_OLD, "c-1", now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["published"][0]["delivered"], 2);
    let (status, again, replayed) = deliver(
        &base_b,
        "payments",
        &standard_headers(STANDARD_OLD, "c-1", now(), &body),
        &body,
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again, first);
    marker(
        &base_b,
        json!({"event": "marker", "data": {}, "users": ["alice"]}),
    )
    .await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(
            until_marker(client).await,
            vec![(
                "payment".to_owned(),
                json!({"customerId": "alice", "amount": 7})
            )]
        );
    }

    // Redis gone: the delivery is refused with 503 so that the provider retries later.
    redis.kill();
    let body = json!({"type": "payment.succeeded", "data": {"customerId": "alice", "amount": 8}})
        .to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, e, _) = deliver(
            &base_a,
            "payments",
            &standard_headers(STANDARD_OLD, "c-2", now(), &body),
            &body,
        )
        .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let code = e["error"]["code"].as_str().unwrap();
            assert!(
                ["engine_unavailable", "outcome_unknown"].contains(&code),
                "{e}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status}: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let m = metrics(&base_a).await;
    assert!(
        metric(
            &m,
            "herald_webhook_refused_total{webhook=\"payments\",reason=\"engine_unavailable\"}"
        ) >= 1
    );
}

/// docs/guides/webhooks.md: its configuration and its signing script (openssl and curl), run as
/// written, give what the guide shows.
#[tokio::test]
async fn the_guide_runs_as_written() {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/guides/webhooks.md"
    ))
    .unwrap();
    let block = |lang: &str, containing: &str| {
        guide
            .split(&format!("```{lang}\n"))
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .find(|b| b.contains(containing))
            .unwrap_or_else(|| panic!("no {lang} block with {containing:?} in the guide"))
            .to_owned()
    };
    let dir = TempDir::new("guide");
    let config = dir.write("herald.toml", &block("toml", "name = \"payments\""));
    let script = dir.write("send-payment.sh", &block("sh", "#!/bin/sh"));
    let hub = HeraldProcess::start(&["--config", &config], &[]).await;
    let base = format!("http://{}", hub.addr);
    let mut alice = subscribe(&base, "userId=alice&channels=backoffice").await;
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("sh")
            .args([script.as_str(), "alice", "1200"])
            .env("HUB", &base)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the guide's script did not finish")
    .expect("run sh");
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        answer["published"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    marker(
        &base,
        json!({"event": "marker", "data": {}, "users": ["alice"]}),
    )
    .await;
    assert_eq!(
        until_marker(&mut alice).await,
        vec![
            (
                "payment".to_owned(),
                json!({"customerId": "alice", "merchantId": "m1", "amount": 1200, "currency": "EUR"})
            ),
            (
                "sale".to_owned(),
                json!({"customer": "alice", "amount": 1200, "text": "alice paid 1200 EUR"})
            ),
        ]
    );
}

/// Stops an in-process server when the test ends, however it ends.
struct CancelOnDrop(tokio_util::sync::CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A memory broker whose `fail_at`-th publish (counting from 1) fails once, as an engine that
/// goes away between two events of one delivery.
#[derive(Debug)]
struct FlakyBroker {
    inner: MemoryBroker,
    publishes: AtomicUsize,
    fail_at: usize,
}

#[async_trait]
impl Broker for FlakyBroker {
    fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle) {
        self.inner.start(delivery, lifecycle);
    }
    async fn publish(&self, p: Publication) -> Result<Published, EngineError> {
        if self.publishes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(EngineError::Unavailable("injected".into()));
        }
        self.inner.publish(p).await
    }
    async fn command(&self, c: herald::broker::Command) -> Result<usize, EngineError> {
        self.inner.command(c).await
    }
    async fn head(&self) -> Result<EventId, EngineError> {
        self.inner.head().await
    }
    async fn replay(
        &self,
        after: EventId,
        filter: &ReplayFilter,
        cap: ReplayCap,
    ) -> Result<Replay, EngineError> {
        self.inner.replay(after, filter, cap).await
    }
    fn history_stats(&self) -> Option<HistoryStats> {
        self.inner.history_stats()
    }
    fn health(&self) -> EngineHealth {
        EngineHealth::Ok
    }
    async fn shutdown(&self) {}
}

/// A delivery mapped to two events, with the engine failing after the first: `503` saying so,
/// and the provider's retry publishes the second only; every later retry publishes nothing.
/// (In process: the fault is injected between two publishes, which no real engine can be told
/// to do.)
#[tokio::test]
async fn a_retry_completes_a_delivery_the_engine_failed_half_way() {
    let settings: herald::webhooks::WebhookSettings = serde_json::from_value(json!({
        "name": "payments",
        "scheme": "standard-webhooks",
        "secrets": [STANDARD_OLD],
        "rules": [
            {"when": {"/type": "paid"}, "event": "payment", "users": "/customer"},
            {"when": {"/type": "paid"}, "event": "sale", "channels": ["backoffice"]}
        ]
    }))
    .unwrap();
    let mut config = herald::config::Config::default();
    config.http.webhooks = vec![settings.into_config(0).unwrap()];
    config.validate().unwrap();
    let broker = Arc::new(FlakyBroker {
        inner: MemoryBroker::new(HistoryLimits {
            max_events: 100,
            max_age: Duration::from_secs(60),
            max_bytes: 1 << 20,
        }),
        publishes: AtomicUsize::new(0),
        fail_at: 2,
    });
    let lifecycle = Lifecycle::new();
    let hub = herald::Hub::start(
        config.hub.clone(),
        Engine::new(broker, Arc::new(herald::presence::MemoryPresence::new())),
        &lifecycle,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = lifecycle.token().clone();
    let options = herald::server::ServerOptions::from_config(&config).unwrap();
    tokio::spawn(herald::server::serve(
        listener,
        herald::http::AppState::new(hub, config.http.clone()),
        lifecycle,
        options,
    ));
    let _stop = CancelOnDrop(cancel);
    let mut alice = subscribe(&base, "userId=alice&channels=backoffice").await;

    let body = json!({"type": "paid", "customer": "alice"}).to_string();
    let send = || async {
        let headers = standard_headers(STANDARD_OLD, "half", now(), &body);
        deliver(&base, "payments", &headers, &body).await
    };
    let (status, e, _) = send().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of the 2 events"),
        "{e}"
    );
    let (status, second, replayed) = send().await;
    assert_eq!((status, replayed), (StatusCode::OK, false), "{second}");
    assert_eq!(second["published"].as_array().map(Vec::len), Some(2));
    let (status, third, replayed) = send().await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(third, second);

    marker(
        &base,
        json!({"event": "marker", "data": {}, "users": ["alice"]}),
    )
    .await;
    let seen: Vec<String> = until_marker(&mut alice)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(seen, ["payment", "sale"]);
}
