//! The Mercure protocol against the real `herald` binary: form POSTs as publishers (one
//! written the way Symfony's Mercure component publishes), SSE subscribers read with an
//! independent parser (`eventsource-stream`); 0.x tokens with the `mercure` claim and 1.0
//! `at+jwt` access tokens with `authorization_details`, both generations on one hub.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{http_client, send, HeraldProcess, WAIT};

const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

fn jwt(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn publisher() -> String {
    jwt(json!({"mercure": {"publish": ["*"]}}))
}

/// A hub with Mercure on, its keys given under Mercure's own environment names.
async fn hub(args: &[&str]) -> HeraldProcess {
    let mut all = vec!["--mercure"];
    all.extend_from_slice(args);
    HeraldProcess::start(
        &all,
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
            ("MERCURE_SUBSCRIBER_JWT_KEY", SECRET),
        ],
    )
    .await
}

/// Percent-encodes a form value as PHP's `http_build_query` does (RFC 1738: spaces as `+`).
fn form_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A publish: its status, `Content-Type` and body.
async fn post(
    p: &HeraldProcess,
    token: Option<&str>,
    body: String,
) -> (StatusCode, String, String) {
    let mut req = http_client()
        .post(p.url("/.well-known/mercure"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer(send(req).await).await
}

/// Publishes and returns the update's id.
async fn publish(p: &HeraldProcess, fields: &[(&str, &str)]) -> String {
    let (status, ct, body) = post(p, Some(&publisher()), form(fields)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    body.trim_end().to_owned()
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// A Mercure subscriber.
struct Sub {
    events: Events,
    headers: reqwest::header::HeaderMap,
}

impl Sub {
    async fn next(&mut self) -> Event {
        match tokio::time::timeout(WAIT, self.events.next()).await {
            Ok(Some(Ok(e))) => e,
            other => panic!("no event: {other:?}"),
        }
    }

    /// Every event up to the one whose data is `end` (excluded): their data.
    async fn until_end(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            if e.data == "end" {
                return seen;
            }
            seen.push(e.data);
        }
    }
}

fn url(p: &HeraldProcess, query: &[(&str, &str)]) -> String {
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", form_value(v)))
        .collect();
    p.url(&format!("/.well-known/mercure?{}", q.join("&")))
}

async fn try_subscribe(
    p: &HeraldProcess,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http_client().get(url(p, query));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

async fn subscribe(p: &HeraldProcess, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Sub {
    let r = try_subscribe(p, query, headers).await;
    let status = r.status();
    if status != StatusCode::OK {
        panic!("subscribe: {status} {}", r.text().await.unwrap());
    }
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let headers = r.headers().clone();
    Sub {
        events: Box::pin(
            r.bytes_stream()
                .eventsource()
                .map(|r| r.map_err(|e| e.to_string())),
        ),
        headers,
    }
}

const END: &str = "urn:test:end";

async fn end(p: &HeraldProcess) {
    publish(p, &[("topic", END), ("data", "end")]).await;
}

#[tokio::test]
async fn exact_topics_templates_and_several_selectors() {
    let p = hub(&["--mercure-anonymous"]).await;
    let mut exact = subscribe(
        &p,
        &[("topic", "https://example.com/books/1"), ("topic", END)],
        &[],
    )
    .await;
    let mut template = subscribe(
        &p,
        &[("topic", "https://example.com/books/{id}"), ("topic", END)],
        &[],
    )
    .await;
    let mut several = subscribe(
        &p,
        &[
            ("topic", "urn:a"),
            ("topic", "https://example.com/authors/{id}{?lang}"),
            ("topic", END),
        ],
        &[],
    )
    .await;
    let mut all = subscribe(&p, &[("topic", "*")], &[]).await;
    for (topic, data) in [
        ("https://example.com/books/1", "b1"),
        ("https://example.com/books/2", "b2"),
        ("https://example.com/books/2/reviews", "r2"),
        ("https://example.com/authors/7?lang=fr", "a7"),
        ("urn:a", "ua"),
        ("urn:other", "uo"),
    ] {
        publish(&p, &[("topic", topic), ("data", data)]).await;
    }
    // An update with several topics reaches each subscriber once.
    publish(
        &p,
        &[
            ("topic", "https://example.com/books/1"),
            ("topic", "urn:a"),
            ("data", "both"),
        ],
    )
    .await;
    end(&p).await;
    assert_eq!(exact.until_end().await, ["b1", "both"]);
    assert_eq!(template.until_end().await, ["b1", "b2", "both"]);
    assert_eq!(several.until_end().await, ["a7", "ua", "both"]);
    assert_eq!(
        all.until_end().await,
        ["b1", "b2", "r2", "a7", "ua", "uo", "both"]
    );
    // A topic of any length and characters (an IRI, 3,000 characters).
    let long = format!("https://example.com/livres/{}", "é".repeat(1500));
    let mut one = subscribe(&p, &[("topic", &long), ("topic", END)], &[]).await;
    publish(&p, &[("topic", &long), ("data", "long")]).await;
    end(&p).await;
    assert_eq!(one.until_end().await, ["long"]);
}

#[tokio::test]
async fn private_updates_reach_only_authorized_subscribers() {
    let p = hub(&["--mercure-anonymous"]).await;
    let inbox = "https://example.com/users/1/inbox";
    let allowed =
        jwt(json!({"mercure": {"subscribe": ["https://example.com/users/1/{box}", END]}}));
    let wrong = jwt(json!({"mercure": {"subscribe": ["https://example.com/users/2/{box}"]}}));
    let query = [
        ("topic", "https://example.com/users/{id}/{box}"),
        ("topic", END),
    ];
    let mut anonymous = subscribe(&p, &query, &[]).await;
    let bearer = format!("Bearer {allowed}");
    let mut header = subscribe(&p, &query, &[("authorization", &bearer)]).await;
    let cookie = format!("mercureAuthorization={allowed}");
    let mut by_cookie = subscribe(&p, &query, &[("cookie", &cookie)]).await;
    let mut by_query = {
        let mut q = query.to_vec();
        q.push(("authorization", &allowed));
        subscribe(&p, &q, &[]).await
    };
    let wrong_bearer = format!("Bearer {wrong}");
    let mut wrong_claim = subscribe(&p, &query, &[("authorization", &wrong_bearer)]).await;
    publish(
        &p,
        &[("topic", inbox), ("data", "secret"), ("private", "on")],
    )
    .await;
    publish(&p, &[("topic", inbox), ("data", "public")]).await;
    // A private update is for whoever may read one of its topics.
    publish(
        &p,
        &[
            ("topic", "https://example.com/users/3/inbox"),
            ("topic", inbox),
            ("data", "alternate"),
            ("private", "on"),
        ],
    )
    .await;
    end(&p).await;
    for sub in [&mut header, &mut by_cookie, &mut by_query] {
        assert_eq!(sub.until_end().await, ["secret", "public", "alternate"]);
    }
    assert_eq!(anonymous.until_end().await, ["public"]);
    assert_eq!(wrong_claim.until_end().await, ["public"]);
    // Nor through a replay.
    let mut replayed = subscribe(&p, &[("topic", "*"), ("lastEventID", "earliest")], &[]).await;
    assert_eq!(replayed.headers["last-event-id"], "earliest");
    assert_eq!(replayed.until_end().await, ["public"]);
}

#[tokio::test]
async fn data_ids_types_and_retry_are_sent_as_published() {
    let p = hub(&["--mercure-anonymous"]).await;
    let mut sub = subscribe(&p, &[("topic", "urn:t")], &[]).await;
    let data = "line 1\n\n  line 3 with \"quotes\" & = + %\n{\"json\": true}\n";
    let id = publish(
        &p,
        &[
            ("topic", "urn:t"),
            ("data", data),
            ("id", "https://example.com/updates/1"),
            ("type", "book updated"),
            ("retry", "2500"),
        ],
    )
    .await;
    assert_eq!(id, "https://example.com/updates/1", "the publisher's id");
    let e = sub.next().await;
    assert_eq!(e.id, "https://example.com/updates/1");
    assert_eq!(e.event, "book updated");
    assert_eq!(e.retry, Some(Duration::from_millis(2500)));
    assert_eq!(e.data, data, "byte for byte, empty lines included");
    // Without an id the hub makes a urn:uuid, which the event carries; without a type it is a
    // `message`; empty data is an event too.
    let id = publish(&p, &[("topic", "urn:t"), ("data", "")]).await;
    assert!(id.starts_with("urn:uuid:") && id.len() == 45, "{id}");
    let e = sub.next().await;
    assert_eq!(
        (e.id.as_str(), e.event.as_str(), e.data.as_str()),
        (id.as_str(), "message", "")
    );
}

#[tokio::test]
async fn reconnection_with_last_event_id_and_earliest() {
    let p = hub(&["--mercure-anonymous"]).await;
    let topic = [("topic", "urn:r"), ("topic", END)];
    for n in 1..=3 {
        let id = format!("https://example.com/r/{n}");
        publish(
            &p,
            &[("topic", "urn:r"), ("data", &format!("u{n}")), ("id", &id)],
        )
        .await;
    }
    // The header, as EventSource sends it when it reconnects.
    let mut header = subscribe(&p, &topic, &[("last-event-id", "https://example.com/r/1")]).await;
    assert_eq!(header.headers["last-event-id"], "https://example.com/r/1");
    // The query parameter, for a first connection.
    let mut query = {
        let mut q = topic.to_vec();
        q.push(("lastEventID", "https://example.com/r/2"));
        subscribe(&p, &q, &[]).await
    };
    let mut earliest = {
        let mut q = topic.to_vec();
        q.push(("lastEventID", "earliest"));
        subscribe(&p, &q, &[]).await
    };
    assert_eq!(earliest.headers["last-event-id"], "earliest");
    // An id the hub does not know: everything retained (within the cap), and the answer says
    // that it starts from the earliest.
    let mut unknown = subscribe(&p, &topic, &[("last-event-id", "urn:never-published")]).await;
    assert_eq!(unknown.headers["last-event-id"], "earliest");
    // A fresh subscriber gets no header.
    let fresh = subscribe(&p, &topic, &[]).await;
    assert!(fresh.headers.get("last-event-id").is_none());
    publish(&p, &[("topic", "urn:r"), ("data", "live")]).await;
    end(&p).await;
    // Each in order, nothing twice.
    assert_eq!(header.until_end().await, ["u2", "u3", "live"]);
    assert_eq!(query.until_end().await, ["u3", "live"]);
    assert_eq!(earliest.until_end().await, ["u1", "u2", "u3", "live"]);
    assert_eq!(unknown.until_end().await, ["u1", "u2", "u3", "live"]);
    // The replayed events keep the publisher's ids.
    let mut again = subscribe(
        &p,
        &[("topic", "urn:r")],
        &[("last-event-id", "https://example.com/r/2")],
    )
    .await;
    assert_eq!(again.next().await.id, "https://example.com/r/3");
}

/// Issue 8's replay cap on this endpoint: a resume beyond it sends the newest updates that fit
/// and names, in `Last-Event-ID`, the update before them (one the subscriber may see). For `*`
/// and templates the cap counts every update they would replay, whatever its topic.
#[tokio::test]
async fn a_resume_beyond_the_replay_cap_sends_what_fits_and_says_where() {
    let p = hub(&["--mercure-anonymous", "--max-replay-events", "2"]).await;
    // c1 … c8: odd ones on urn:a, even ones on urn:b, c8 private.
    for n in 1..=8 {
        let topic = if n % 2 == 1 { "urn:a" } else { "urn:b" };
        let (data, id) = (format!("u{n}"), format!("c{n}"));
        let mut fields = vec![("topic", topic), ("data", &data), ("id", &id)];
        if n == 8 {
            fields.push(("private", "on"));
        }
        publish(&p, &fields).await;
    }
    let exact = [("topic", "urn:a"), ("topic", END)];
    let all = [("topic", "*")];
    let template = [("topic", "urn:{x}"), ("topic", END)];
    let last = |id: &'static str| [("last-event-id", id)];
    // urn:a from c5: one update to replay, within the cap.
    let mut exact_within = subscribe(&p, &exact, &last("c5")).await;
    assert_eq!(exact_within.headers["last-event-id"], "c5");
    // urn:a from c1: c3, c5, c7 are more than 2; c5 and c7 fit: c7 is sent, after c5.
    let mut exact_beyond = subscribe(&p, &exact, &last("c1")).await;
    assert_eq!(exact_beyond.headers["last-event-id"], "c5");
    // `*` from c1: every topic's updates count (7 of them). The two newest fit, c7 and the
    // private c8; this subscriber may not see c8, so the stream stands at c7 and sends nothing
    // (never naming c8).
    let mut all_beyond = subscribe(&p, &all, &last("c1")).await;
    assert_eq!(all_beyond.headers["last-event-id"], "c7");
    // A template from c6: c7 and c8 fit (c8 filtered out as private).
    let mut template_within = subscribe(&p, &template, &last("c6")).await;
    assert_eq!(template_within.headers["last-event-id"], "c6");
    // A template from c4: c5 … c8 are four, over the cap although only two are on urn:a.
    let mut template_beyond = subscribe(&p, &template, &last("c4")).await;
    assert_eq!(template_beyond.headers["last-event-id"], "c7");
    end(&p).await;
    assert_eq!(exact_within.until_end().await, ["u7"]);
    assert_eq!(exact_beyond.until_end().await, ["u7"]);
    assert_eq!(all_beyond.until_end().await, Vec::<String>::new());
    assert_eq!(template_within.until_end().await, ["u7"]);
    assert_eq!(template_beyond.until_end().await, Vec::<String>::new());
}

#[tokio::test]
async fn every_refusal_has_its_status_and_a_text_answer() {
    let p = hub(&["--cors-origins", "https://app.example.com"]).await;
    let ok = publisher();
    let expect = |(status, ct, body): (StatusCode, String, String), want: StatusCode| {
        assert_eq!(status, want, "{body}");
        assert!(ct.starts_with("text/plain"), "{want}: {ct} {body}");
    };
    // Publishers.
    expect(
        post(&p, None, form(&[("topic", "t")])).await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        post(&p, Some("not-a-jwt"), form(&[("topic", "t")])).await,
        StatusCode::UNAUTHORIZED,
    );
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"mercure": {"publish": ["*"]}}),
        &EncodingKey::from_secret(b"another secret entirely"),
    )
    .unwrap();
    expect(
        post(&p, Some(&other_key), form(&[("topic", "t")])).await,
        StatusCode::UNAUTHORIZED,
    );
    let no_claim = jwt(json!({"mercure": {"subscribe": ["*"]}}));
    expect(
        post(&p, Some(&no_claim), form(&[("topic", "t")])).await,
        StatusCode::UNAUTHORIZED,
    );
    let expired = jwt(json!({"mercure": {"publish": ["*"]}, "exp": 1000}));
    expect(
        post(&p, Some(&expired), form(&[("topic", "t")])).await,
        StatusCode::UNAUTHORIZED,
    );
    let books = jwt(json!({"mercure": {"publish": ["https://example.com/books/{id}"]}}));
    expect(
        post(
            &p,
            Some(&books),
            form(&[("topic", "https://example.com/books/1"), ("topic", "urn:x")]),
        )
        .await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(
        post(
            &p,
            Some(&books),
            form(&[("topic", "https://example.com/books/1")])
        )
        .await
        .0,
        StatusCode::OK
    );
    let empty = jwt(json!({"mercure": {"publish": []}}));
    expect(
        post(&p, Some(&empty), form(&[("topic", "t")])).await,
        StatusCode::FORBIDDEN,
    );
    for bad in [
        form(&[("data", "no topic")]),
        form(&[("topic", "t"), ("retry", "soon")]),
        form(&[("topic", "t"), ("id", "a\nid: forged")]),
        form(&[("topic", "t"), ("type", "a\r\nevent: forged")]),
        form(&[("topic", "a\nb")]),
        "topic=t&data=%FF%FE".to_owned(),
    ] {
        expect(post(&p, Some(&ok), bad).await, StatusCode::BAD_REQUEST);
    }
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .bearer_auth(&ok)
            .header("content-type", "application/json")
            .body("{\"topic\": \"t\"}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let big = format!("topic=t&data={}", "x".repeat(70 * 1024));
    assert_eq!(
        post(&p, Some(&ok), big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // A page on another origin may not publish (with a cookie or not).
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .header("origin", "https://evil.example")
            .header("cookie", format!("mercureAuthorization={ok}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("topic=t"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Subscribers.
    let status = |r: reqwest::Response| {
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            ct.as_deref().unwrap_or("").starts_with("text/plain"),
            "{ct:?}"
        );
        r.status()
    };
    let t = [("topic", "urn:t")];
    assert_eq!(
        status(try_subscribe(&p, &[], &[]).await),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(try_subscribe(&p, &t, &[]).await),
        StatusCode::UNAUTHORIZED,
        "anonymous is off"
    );
    assert_eq!(
        status(try_subscribe(&p, &t, &[("authorization", "Bearer nope")]).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(try_subscribe(&p, &[("topic", "urn:t"), ("authorization", "nope")], &[]).await),
        StatusCode::UNAUTHORIZED
    );
    let sub = jwt(json!({"mercure": {"subscribe": ["*"]}}));
    let cookie = format!("mercureAuthorization={sub}");
    assert_eq!(
        status(
            try_subscribe(
                &p,
                &t,
                &[("cookie", &cookie), ("origin", "https://evil.example")]
            )
            .await
        ),
        StatusCode::FORBIDDEN,
        "a cookie from an origin CORS does not list"
    );
    let too_many: Vec<(&str, &str)> = std::iter::repeat_n(("topic", "urn:t"), 129).collect();
    assert_eq!(
        status(
            try_subscribe(
                &p,
                &too_many,
                &[("authorization", &format!("Bearer {sub}"))]
            )
            .await
        ),
        StatusCode::BAD_REQUEST
    );
    // HEAD checks the same way and opens nothing.
    let sub_bearer = format!("Bearer {sub}");
    let head = send(
        http_client()
            .head(url(&p, &t))
            .header("authorization", &sub_bearer),
    )
    .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], "text/event-stream");
    assert_eq!(
        send(http_client().head(url(&p, &t))).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The same cookie from the hub's own pages, and a header token from anywhere, are fine.
    subscribe(&p, &t, &[("cookie", &cookie)]).await;
    subscribe(
        &p,
        &t,
        &[
            ("authorization", &format!("Bearer {sub}")),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
}

/// A publisher written the way Symfony's Mercure component publishes: `http_build_query` of the
/// update (each topic its own `topic=` field, `private=on`), an HS256 JWT with the `mercure`
/// claim in a `Bearer` header; the answer's body is the id.
#[tokio::test]
async fn a_publisher_written_like_symfony_mercure() {
    let p = hub(&["--mercure-anonymous"]).await;
    let mut sub = subscribe(&p, &[("topic", "https://example.com/books/{id}")], &[]).await;
    // `new Update(['https://example.com/books/1', 'https://example.com/books/1.jsonld'],
    // json_encode(['status' => 'OutOfStock']), false, null, 'book')`
    let body = "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=https%3A%2F%2Fexample.com%2Fbooks%2F1.jsonld&data=%7B%22status%22%3A%22OutOfStock%22%7D&type=book";
    let token = jwt(json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}}));
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Bearer {token}"))
            .body(body),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let id = r.text().await.unwrap();
    let e = sub.next().await;
    assert_eq!(e.id, id.trim_end());
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("book", "{\"status\":\"OutOfStock\"}")
    );
}

#[tokio::test]
async fn es256_keys_as_pem_text() {
    let pair = rcgen::KeyPair::generate().unwrap();
    let public = pair.public_key_pem();
    let p = HeraldProcess::start(
        &[
            "--mercure",
            "--mercure-anonymous",
            "--mercure-publisher-jwt-alg",
            "ES256",
        ],
        &[("HERALD_MERCURE_PUBLISHER_JWT_KEY", public.as_str())],
    )
    .await;
    let token = encode(
        &Header::new(Algorithm::ES256),
        &json!({"mercure": {"publish": ["*"]}}),
        &EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let mut sub = subscribe(&p, &[("topic", "urn:es")], &[]).await;
    let (status, _, body) = post(
        &p,
        Some(&token),
        form(&[("topic", "urn:es"), ("data", "signed")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sub.next().await.data, "signed");
    // An HS256 token is not accepted by an ES256 key.
    assert_eq!(
        post(&p, Some(&publisher()), form(&[("topic", "urn:es")]))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn herald_keeps_working_beside_it() {
    let p = hub(&["--mercure-anonymous"]).await;
    let r = send(http_client().get(p.url("/api/sse?channels=news"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A Mercure subscriber does not get Herald broadcasts.
    let mut sub = subscribe(&p, &[("topic", "*")], &[]).await;
    let r = send(
        http_client()
            .post(p.url("/api/sse/message"))
            .json(&json!({"broadcast": true, "event": "note", "data": {"x": 1}})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Herald publishers cannot forge an update.
    let r = send(
        http_client()
            .post(p.url("/api/sse/message"))
            .json(&json!({"broadcast": true, "event": "mercure:update", "text": "{}\nforged"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    end(&p).await;
    assert_eq!(sub.until_end().await, Vec::<String>::new());
}

/// Two nodes on one Redis: an update published on either reaches subscribers on both, and a
/// subscriber resumes on the other node, from a publisher's id or `earliest`.
#[tokio::test]
async fn two_nodes_on_redis() {
    let redis = redis_support::RedisServer::start().await;
    let prefix = format!("t-mercure-{:08x}", rand::random::<u32>());
    let url = redis.url();
    let node = |id: &'static str| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            HeraldProcess::start(
                &[
                    "--mercure",
                    "--mercure-anonymous",
                    "--engine",
                    &url,
                    "--redis-prefix",
                    &prefix,
                    "--node-id",
                    id,
                ],
                &[
                    ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
                    ("MERCURE_SUBSCRIBER_JWT_KEY", SECRET),
                ],
            )
            .await
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let q = [("topic", "https://example.com/books/{id}"), ("topic", END)];
    let mut on_a = subscribe(&a, &q, &[]).await;
    let mut on_b = subscribe(&b, &q, &[]).await;
    publish(
        &a,
        &[
            ("topic", "https://example.com/books/1"),
            ("data", "from a"),
            ("id", "x1"),
        ],
    )
    .await;
    publish(
        &b,
        &[
            ("topic", "https://example.com/books/2"),
            ("data", "from b"),
            ("id", "x2"),
        ],
    )
    .await;
    publish(
        &a,
        &[
            ("topic", "https://example.com/books/3"),
            ("data", "again a"),
            ("id", "x3"),
        ],
    )
    .await;
    end(&a).await;
    assert_eq!(on_a.until_end().await, ["from a", "from b", "again a"]);
    assert_eq!(on_b.until_end().await, ["from a", "from b", "again a"]);
    // Resuming on b from an id a published (b never saw its publish), and from `earliest`.
    let mut resumed = subscribe(&b, &q, &[("last-event-id", "x1")]).await;
    assert_eq!(resumed.headers["last-event-id"], "x1");
    let mut earliest = {
        let mut q = q.to_vec();
        q.push(("lastEventID", "earliest"));
        subscribe(&b, &q, &[]).await
    };
    end(&b).await;
    // (The first `end` is in the history too: the replay stops there.)
    assert_eq!(resumed.until_end().await, ["from b", "again a"]);
    assert_eq!(earliest.until_end().await, ["from a", "from b", "again a"]);
}

/// One `HGET` on the test's Redis, over RESP: the value, if any.
async fn redis_hget(redis: &redis_support::RedisServer, key: &str, field: &str) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .unwrap();
    let mut request = String::from("*3\r\n$4\r\nHGET\r\n");
    for part in [key, field] {
        request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(conn);
    let mut head = String::new();
    reader.read_line(&mut head).await.unwrap();
    let len: i64 = head.trim_end()[1..].parse().unwrap();
    if len < 0 {
        return None;
    }
    let mut body = vec![0; len as usize + 2];
    reader.read_exact(&mut body).await.unwrap();
    body.truncate(len as usize);
    Some(String::from_utf8(body).unwrap())
}

/// On Redis a publisher's id is found in one lookup for the whole cluster (the ids hash beside
/// the stream, written by the publish script), not by scanning what the subscriber would
/// have received: a subscriber on node b to another topic than the update's resumes right after
/// the update that node a published, which no scan of its topics could find.
#[tokio::test]
async fn on_redis_a_publishers_id_is_found_for_any_topic() {
    let redis = redis_support::RedisServer::start().await;
    let prefix = format!("t-mercure-ids-{:08x}", rand::random::<u32>());
    let url = redis.url();
    let node = |id: &'static str| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            HeraldProcess::start(
                &[
                    "--mercure",
                    "--mercure-anonymous",
                    "--engine",
                    &url,
                    "--redis-prefix",
                    &prefix,
                    "--node-id",
                    id,
                ],
                &[
                    ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
                    ("MERCURE_SUBSCRIBER_JWT_KEY", SECRET),
                ],
            )
            .await
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let books = |n: u32| format!("https://example.com/books/{n}");
    publish(
        &a,
        &[("topic", &books(2)), ("data", "before"), ("id", "y0")],
    )
    .await;
    publish(&a, &[("topic", &books(1)), ("data", "one"), ("id", "x1")]).await;
    publish(&a, &[("topic", &books(2)), ("data", "two"), ("id", "y1")]).await;
    // The hash holds the id with the event it names.
    let at = redis_hget(&redis, &format!("{prefix}:ids"), "x1")
        .await
        .expect("x1 is in the ids hash");
    assert_eq!(at.split(' ').count(), 2, "<epoch> <seq>: {at}");

    let q = [("topic", books(2)), ("topic", END.to_owned())];
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut resumed = subscribe(&b, &q, &[("last-event-id", "x1")]).await;
    assert_eq!(
        resumed.headers["last-event-id"], "x1",
        "resumed from x1 itself"
    );
    // An id nobody published: everything retained, from `earliest`.
    let mut unknown = subscribe(&b, &q, &[("last-event-id", "nobody")]).await;
    assert_eq!(unknown.headers["last-event-id"], "earliest");
    end(&b).await;
    assert_eq!(
        resumed.until_end().await,
        ["two"],
        "what followed x1 on books/2"
    );
    assert_eq!(unknown.until_end().await, ["before", "two"]);
    // A later update with the same id takes it over.
    publish(
        &b,
        &[("topic", &books(1)), ("data", "one again"), ("id", "x1")],
    )
    .await;
    let moved = redis_hget(&redis, &format!("{prefix}:ids"), "x1")
        .await
        .unwrap();
    assert_ne!(moved, at, "the id names the newer event");
}

/// `--mercure-subscriptions`: a private update when a subscription starts and ends, for a
/// subscriber allowed to see them, and the JSON-LD subscriptions API.
#[tokio::test]
async fn subscription_events_and_the_subscriptions_api() {
    let p = hub(&["--mercure-anonymous", "--mercure-subscriptions"]).await;
    let selector = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";
    let token = jwt(
        json!({"mercure": {"subscribe": [selector, "/.well-known/mercure/subscriptions{/topic}{/subscriber}"]}}),
    );
    let bearer = format!("Bearer {token}");
    let mut watcher = subscribe(&p, &[("topic", selector)], &[("authorization", &bearer)]).await;
    // An anonymous subscriber does not see them (they are private).
    let mut anonymous = subscribe(&p, &[("topic", selector), ("topic", END)], &[]).await;
    let books = "https://example.com/books/{id}";
    let reader = subscribe(&p, &[("topic", books)], &[]).await;
    let event_for = |data: &str| -> Value { serde_json::from_str(data).unwrap() };
    let joined = loop {
        let e = watcher.next().await;
        let v = event_for(&e.data);
        if v["topic"] == books {
            break v;
        }
    };
    assert_eq!(joined["type"], "Subscription");
    assert_eq!(joined["active"], true);
    assert_eq!(joined["@context"], "https://mercure.rocks/");
    let subscriber = joined["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");
    let id = joined["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D/urn%3Auuid%3A"), "{id}");
    // The API.
    let get = |path: String, auth: Option<String>| {
        let mut req = http_client().get(p.url(&path));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = send(req).await;
            let status = r.status();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ct, r.text().await.unwrap())
        }
    };
    let (status, ct, body) = get(
        "/.well-known/mercure/subscriptions".into(),
        Some(bearer.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ct.as_deref(), Some("application/ld+json"));
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["type"], "Subscriptions");
    assert!(all["lastEventID"].is_string());
    let listed = all["subscriptions"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|s| s["subscriber"] == subscriber.as_str() && s["topic"] == books));
    let escaped = "https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D";
    let (status, _, body) = get(
        format!("/.well-known/mercure/subscriptions/{escaped}"),
        Some(bearer.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let for_topic: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(for_topic["subscriptions"].as_array().unwrap().len(), 1);
    let (status, _, body) = get(id.clone(), Some(bearer.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (one["id"].as_str(), one["active"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(
        get(
            format!("/.well-known/mercure/subscriptions/{escaped}/urn%3Auuid%3Anobody"),
            Some(bearer.clone())
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/.well-known/mercure/subscriptions".into(), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let other = format!(
        "Bearer {}",
        jwt(json!({"mercure": {"subscribe": ["https://example.com/{x}"]}}))
    );
    assert_eq!(
        get("/.well-known/mercure/subscriptions".into(), Some(other))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // The subscriber leaves: its subscription ends.
    drop(reader);
    let left = loop {
        let e = watcher.next().await;
        let v = event_for(&e.data);
        if v["subscriber"] == subscriber.as_str() {
            break v;
        }
    };
    assert_eq!(
        (left["active"].as_bool(), left["topic"].as_str()),
        (Some(false), Some(books))
    );
    end(&p).await;
    assert_eq!(anonymous.until_end().await, Vec::<String>::new());
}

/// `--publish-rate-per-key` counts Mercure publishers by their token's `sub`.
#[tokio::test]
async fn publishers_are_rate_limited_by_subject() {
    let p = hub(&["--mercure-anonymous", "--publish-rate-per-key", "1/s:1"]).await;
    let alice = jwt(json!({"sub": "alice", "mercure": {"publish": ["*"]}}));
    let bob = jwt(json!({"sub": "bob", "mercure": {"publish": ["*"]}}));
    assert_eq!(
        post(&p, Some(&alice), form(&[("topic", "t")])).await.0,
        StatusCode::OK
    );
    let (status, ct, body) = post(&p, Some(&alice), form(&[("topic", "t")])).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .bearer_auth(&alice)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("topic=t"),
    )
    .await;
    assert!(
        r.headers().contains_key("retry-after"),
        "429 says when to retry"
    );
    assert_eq!(
        post(&p, Some(&bob), form(&[("topic", "t")])).await.0,
        StatusCode::OK
    );
}

// ---- Mercure 1.0, beside 0.x ----

const DETAIL: &str = "https://mercure.rocks/authorization-detail";

/// A 1.0 access token: `typ: at+jwt`, `aud`, `exp`, and these authorization details.
fn access_token(aud: &str, details: Value) -> String {
    access_token_with(
        Some("at+jwt"),
        json!({"aud": aud, "authorization_details": details}),
    )
}

/// A token with this `typ` header and these claims (`exp` added unless given).
fn access_token_with(typ: Option<&str>, mut claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = typ.map(str::to_owned);
    if claims.get("exp").is_none() {
        claims["exp"] = json!(4_000_000_000u64);
    }
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn grant(actions: &[&str], topics: Value) -> Value {
    json!({"type": DETAIL, "actions": actions, "topics": topics})
}

/// The hub's resource identifier when none is configured: its URL as the request reached it.
fn reached(p: &HeraldProcess) -> String {
    p.url("/.well-known/mercure")
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A publish with a token, its whole answer.
async fn post_raw(p: &HeraldProcess, token: &str, body: String) -> reqwest::Response {
    send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .header("content-type", "application/x-www-form-urlencoded")
            .bearer_auth(token)
            .body(body),
    )
    .await
}

#[tokio::test]
async fn v1_match_and_match_urlpattern_beside_a_0x_subscriber() {
    let p = hub(&["--mercure-anonymous"]).await;
    let mut exact = subscribe(
        &p,
        &[("match", "https://example.com/books/1"), ("match", END)],
        &[],
    )
    .await;
    let mut pattern = subscribe(
        &p,
        &[
            ("match_urlpattern", "https://example.com/books/:id"),
            ("match", END),
        ],
        &[],
    )
    .await;
    let mut several = subscribe(
        &p,
        &[
            ("match", "urn:a"),
            ("match_urlpattern", "https://example.com/authors/:id(\\d+)"),
            ("match", END),
        ],
        &[],
    )
    .await;
    let mut all = subscribe(&p, &[("match", "*")], &[]).await;
    // A 0.x app on the same hub.
    let mut old = subscribe(
        &p,
        &[("topic", "https://example.com/books/{id}"), ("topic", END)],
        &[],
    )
    .await;
    for (topic, data) in [
        ("https://example.com/books/1", "b1"),
        ("https://example.com/books/2", "b2"),
        ("https://example.com/books/1/reviews", "r1"),
        ("https://example.com/authors/7", "a7"),
        ("https://example.com/authors/x", "ax"),
        ("urn:a", "ua"),
        ("https://example.com/{id}", "literal"),
    ] {
        publish(&p, &[("topic", topic), ("data", data)]).await;
    }
    // A 1.0 publisher too: both generations' subscribers get its update, once.
    let v1 = access_token(
        &reached(&p),
        json!([grant(&["publish"], json!([{"match": "*"}]))]),
    );
    let r = post_raw(
        &p,
        &v1,
        form(&[("topic", "https://example.com/books/3"), ("data", "b3")]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    end(&p).await;
    assert_eq!(exact.until_end().await, ["b1"]);
    assert_eq!(pattern.until_end().await, ["b1", "b2", "b3"]);
    assert_eq!(several.until_end().await, ["a7", "ua"]);
    assert_eq!(old.until_end().await, ["b1", "b2", "b3"]);
    assert_eq!(
        all.until_end().await,
        ["b1", "b2", "r1", "a7", "ax", "ua", "literal", "b3"]
    );
    // Refusals of the query, in text/plain.
    for (query, why) in [
        (
            vec![("match_urlpattern", "https://example.com/books/:id(")],
            "a pattern that does not compile",
        ),
        (
            vec![("match_urlpattern", "https://example.com/(?<=a)b")],
            "look-behind",
        ),
        (vec![("matchTemplate", "x")], "an unknown matcher type"),
        (vec![("match", "a"), ("topic", "b")], "both generations"),
        (
            vec![("match", "a"), ("lastEventID", "x")],
            "0.x's resume name",
        ),
        (vec![("last_event_id", "x")], "no selector"),
    ] {
        let r = try_subscribe(&p, &query, &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    let long = format!("https://example.com/{}", "a".repeat(3000));
    let r = try_subscribe(&p, &[("match_urlpattern", &long)], &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "too long a pattern");
    let patterns: Vec<String> = (0..33)
        .map(|i| format!("https://example.com/{i}/:id"))
        .collect();
    let patterns: Vec<(&str, &str)> = patterns
        .iter()
        .map(|p| ("match_urlpattern", p.as_str()))
        .collect();
    assert_eq!(
        try_subscribe(&p, &patterns, &[]).await.status(),
        StatusCode::BAD_REQUEST,
        "at most 32 URL Patterns"
    );
    assert_eq!(
        try_subscribe(&p, &patterns[..32], &[]).await.status(),
        StatusCode::OK
    );
    let many: Vec<(&str, &str)> = std::iter::repeat_n(("match", "urn:t"), 129).collect();
    assert_eq!(
        try_subscribe(&p, &many, &[]).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn v1_access_tokens_and_their_refusals() {
    let p = hub(&[]).await;
    let aud = reached(&p);
    let books = json!([{"match_urlpattern": "https://example.com/books/:id"}]);
    let publisher = access_token(&aud, json!([grant(&["publish"], books.clone())]));
    let (status, ct, id) = post(
        &p,
        Some(&publisher),
        form(&[("topic", "https://example.com/books/1"), ("data", "x")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{id}");
    assert!(
        ct.starts_with("text/plain") && id.starts_with("urn:uuid:"),
        "{ct} {id}"
    );
    // A 1.0 update has exactly one topic (0.x publishers keep their alternates).
    let r = post_raw(
        &p,
        &publisher,
        form(&[
            ("topic", "https://example.com/books/1"),
            ("topic", "https://example.com/books/2"),
        ]),
    )
    .await;
    let (status, ct, body) = answer(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    // A topic the details do not cover: 403 insufficient_scope.
    let r = post_raw(&p, &publisher, form(&[("topic", "urn:x")])).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        challenge(&r).contains("insufficient_scope"),
        "{}",
        challenge(&r)
    );
    // Every refused token: 401 invalid_token.
    let wrong_aud = access_token(
        "https://other.example/.well-known/mercure",
        json!([grant(&["publish"], books.clone())]),
    );
    let wrong_typ = access_token_with(
        Some("JWT"),
        json!({"aud": aud, "authorization_details": [grant(&["publish"], books.clone())]}),
    );
    let no_exp = access_token_with(
        Some("at+jwt"),
        json!({"aud": aud, "exp": null, "authorization_details": [grant(&["publish"], books.clone())]}),
    );
    let bad_pattern = access_token(
        &aud,
        json!([grant(
            &["publish"],
            json!([{"match_urlpattern": "https://example.com/:id("}])
        )]),
    );
    let bad_entry = access_token(
        &aud,
        json!([grant(&["publish"], books.clone()), {"type": DETAIL, "actions": ["publish"]}]),
    );
    for (token, why) in [
        (&wrong_aud, "wrong aud"),
        (&wrong_typ, "wrong typ"),
        (&no_exp, "no exp"),
        (&bad_pattern, "a pattern that does not compile"),
        (&bad_entry, "a detail without topics"),
    ] {
        let r = post_raw(&p, token, form(&[("topic", "https://example.com/books/1")])).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert!(
            challenge(&r).contains("invalid_token"),
            "{why}: {}",
            challenge(&r)
        );
    }
    // The hub's own namespace is the hub's, for 1.0 publishers (0.x hubs had no such rule).
    let everything = access_token(&aud, json!([grant(&["publish"], json!([{"match": "*"}]))]));
    for topic in [
        "/.well-known/mercure/subscriptions/exact/a/b",
        "https://other.example/.well-known/mercure",
    ] {
        let r = post_raw(&p, &everything, form(&[("topic", topic)])).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{topic}");
        assert!(challenge(&r).contains("insufficient_scope"));
        let r = post_raw(
            &p,
            &jwt(json!({"mercure": {"publish": ["*"]}})),
            form(&[("topic", topic)]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "0.x: {topic}");
    }
    // No publish action: 403.
    let subscriber = access_token(
        &aud,
        json!([grant(&["subscribe"], json!([{"match": "*"}]))]),
    );
    let r = post_raw(
        &p,
        &subscriber,
        form(&[("topic", "https://example.com/books/1")]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&r).contains("insufficient_scope"));
    // No token at all: 401 with a bare challenge.
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("topic=t"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r), "Bearer");
    // Subscribers: the same checks.
    let q = [("match", "urn:t")];
    let bearer = |t: &str| format!("Bearer {t}");
    for (token, want, error) in [
        (&wrong_aud, StatusCode::UNAUTHORIZED, "invalid_token"),
        (&wrong_typ, StatusCode::UNAUTHORIZED, "invalid_token"),
        (&no_exp, StatusCode::UNAUTHORIZED, "invalid_token"),
        (&publisher, StatusCode::FORBIDDEN, "insufficient_scope"),
    ] {
        let r = try_subscribe(&p, &q, &[("authorization", &bearer(token))]).await;
        assert_eq!(r.status(), want, "{error}");
        assert!(challenge(&r).contains(error), "{}", challenge(&r));
    }
    let r = try_subscribe(&p, &q, &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "anonymous is off");
    assert_eq!(challenge(&r), "Bearer");
    // No token in the query of a 1.0 request, even a good one.
    for param in ["authorization", "access_token"] {
        let r = try_subscribe(&p, &[("match", "urn:t"), (param, &subscriber)], &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{param}");
        assert!(challenge(&r).contains("invalid_request"));
    }
    subscribe(&p, &q, &[("authorization", &bearer(&subscriber))]).await;
    // A 0.x token is still read as 0.x, on either request.
    let old = jwt(json!({"mercure": {"subscribe": ["*"]}}));
    subscribe(&p, &q, &[("authorization", &bearer(&old))]).await;
    // The 1.0 token on a 0.x request is read as 1.0 (its aud checked).
    subscribe(
        &p,
        &[("topic", "urn:t")],
        &[("authorization", &bearer(&subscriber))],
    )
    .await;
    let r = try_subscribe(
        &p,
        &[("topic", "urn:t")],
        &[("authorization", &bearer(&wrong_aud))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn v1_resource_identifier_setting() {
    let id = "https://hub.example.com/.well-known/mercure";
    let p = hub(&["--mercure-resource-identifier", id]).await;
    let details = json!([grant(
        &["publish"],
        json!([{"match_urlpattern": "/books/:id"}])
    )]);
    let configured = access_token(id, details.clone());
    let as_reached = access_token(&reached(&p), details);
    let r = post_raw(
        &p,
        &as_reached,
        form(&[("topic", "https://hub.example.com/books/1")]),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the URL as reached is not the aud"
    );
    // A relative pattern resolves against the resource identifier: it allows that host's
    // absolute topics and relative ones, no other host's.
    for (topic, want) in [
        ("https://hub.example.com/books/1", StatusCode::OK),
        ("/books/2", StatusCode::OK),
        ("https://other.example/books/1", StatusCode::FORBIDDEN),
    ] {
        let r = post_raw(&p, &configured, form(&[("topic", topic)])).await;
        assert_eq!(r.status(), want, "{topic}");
    }
}

#[tokio::test]
async fn v1_private_updates() {
    let p = hub(&["--mercure-anonymous"]).await;
    let aud = reached(&p);
    let q = [
        ("match_urlpattern", "https://example.com/books/:id"),
        ("match", END),
    ];
    let with = |t: &str| format!("Bearer {t}");
    let authorized = access_token(
        &aud,
        json!([grant(
            &["subscribe"],
            json!([{"match_urlpattern": "https://example.com/books/:id"}])
        )]),
    );
    let other_book = access_token(
        &aud,
        json!([grant(
            &["subscribe"],
            json!([{"match": "https://example.com/books/2"}])
        )]),
    );
    let mut yes = subscribe(&p, &q, &[("authorization", &with(&authorized))]).await;
    let mut wrong = subscribe(&p, &q, &[("authorization", &with(&other_book))]).await;
    let mut anonymous = subscribe(&p, &q, &[]).await;
    // A 0.x subscriber whose mercure claim allows it, on the same hub.
    let old = jwt(json!({"mercure": {"subscribe": ["https://example.com/books/{id}"]}}));
    let mut old_yes = subscribe(
        &p,
        &[("topic", "https://example.com/books/{id}"), ("topic", END)],
        &[("authorization", &with(&old))],
    )
    .await;
    let publisher = access_token(&aud, json!([grant(&["publish"], json!([{"match": "*"}]))]));
    for fields in [
        vec![
            ("topic", "https://example.com/books/1"),
            ("data", "secret"),
            ("private", "on"),
        ],
        vec![("topic", "https://example.com/books/1"), ("data", "public")],
    ] {
        let r = post_raw(&p, &publisher, form(&fields)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    end(&p).await;
    assert_eq!(yes.until_end().await, ["secret", "public"]);
    assert_eq!(old_yes.until_end().await, ["secret", "public"]);
    assert_eq!(wrong.until_end().await, ["public"]);
    assert_eq!(anonymous.until_end().await, ["public"]);
}

#[tokio::test]
async fn v1_last_event_id_and_mercure_last_event_id() {
    let p = hub(&["--mercure-anonymous"]).await;
    for n in 1..=3 {
        let id = format!("https://example.com/r/{n}");
        publish(
            &p,
            &[("topic", "urn:r"), ("data", &format!("u{n}")), ("id", &id)],
        )
        .await;
    }
    let q = |extra: &[(&'static str, &'static str)]| {
        let mut q = vec![("match", "urn:r"), ("match", END)];
        q.extend_from_slice(extra);
        q
    };
    // The 1.0 query name, answered with the 1.0 header only.
    let mut query = subscribe(&p, &q(&[("last_event_id", "https://example.com/r/1")]), &[]).await;
    assert_eq!(
        query.headers["mercure-last-event-id"],
        "https://example.com/r/1"
    );
    assert!(query.headers.get("last-event-id").is_none());
    // The request header keeps its name (EventSource sends it), and wins over the query.
    let mut header = subscribe(
        &p,
        &q(&[("last_event_id", "https://example.com/r/1")]),
        &[("last-event-id", "https://example.com/r/2")],
    )
    .await;
    assert_eq!(
        header.headers["mercure-last-event-id"],
        "https://example.com/r/2"
    );
    let mut earliest = subscribe(&p, &q(&[("last_event_id", "earliest")]), &[]).await;
    assert_eq!(earliest.headers["mercure-last-event-id"], "earliest");
    // An id the hub does not know: everything retained, from `earliest` (as for 0.x).
    let mut unknown = subscribe(&p, &q(&[("last_event_id", "urn:never")]), &[]).await;
    assert_eq!(unknown.headers["mercure-last-event-id"], "earliest");
    // A 0.x request on the same hub keeps the 0.x names.
    let old = subscribe(
        &p,
        &[
            ("topic", "urn:r"),
            ("lastEventID", "https://example.com/r/2"),
        ],
        &[],
    )
    .await;
    assert_eq!(old.headers["last-event-id"], "https://example.com/r/2");
    assert!(old.headers.get("mercure-last-event-id").is_none());
    let fresh = subscribe(&p, &q(&[]), &[]).await;
    assert!(fresh.headers.get("mercure-last-event-id").is_none());
    publish(&p, &[("topic", "urn:r"), ("data", "live")]).await;
    end(&p).await;
    // Each in order, nothing twice.
    assert_eq!(query.until_end().await, ["u2", "u3", "live"]);
    assert_eq!(header.until_end().await, ["u3", "live"]);
    assert_eq!(earliest.until_end().await, ["u1", "u2", "u3", "live"]);
    assert_eq!(unknown.until_end().await, ["u1", "u2", "u3", "live"]);
}

#[tokio::test]
async fn v1_cookie_name() {
    let p = hub(&[]).await;
    let aud = reached(&p);
    let token = access_token(
        &aud,
        json!([grant(&["subscribe", "publish"], json!([{"match": "*"}]))]),
    );
    let v1_cookie = format!("__Secure-mercure_access_token={token}");
    let v0_cookie = format!("mercureAuthorization={token}");
    let q = [("match", "urn:c"), ("match", END)];
    let mut sub = subscribe(&p, &q, &[("cookie", &v1_cookie)]).await;
    // Each generation reads its own cookie only.
    assert_eq!(
        try_subscribe(&p, &q, &[("cookie", &v0_cookie)])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        try_subscribe(&p, &[("topic", "urn:c")], &[("cookie", &v1_cookie)])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // From a page on an origin CORS does not list, the cookie is refused.
    assert_eq!(
        try_subscribe(
            &p,
            &q,
            &[("cookie", &v1_cookie), ("origin", "https://evil.example")]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    // A publisher may send the 1.0 cookie too (no Origin: not a browser page).
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure"))
            .header("cookie", &v1_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("topic", "urn:c"),
                ("data", "private"),
                ("private", "on"),
            ])),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    end(&p).await;
    assert_eq!(sub.until_end().await, ["private"]);
}

/// The next subscription event `want` accepts, checking on the way that no event arrives twice.
async fn next_for(
    watcher: &mut Sub,
    seen: &mut std::collections::HashSet<String>,
    want: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let e = watcher.next().await;
        assert!(seen.insert(e.id.clone()), "event {} arrived twice", e.id);
        let v: Value = serde_json::from_str(&e.data).unwrap();
        if want(&v) {
            return v;
        }
    }
}

/// The subscriptions API and subscription events across a Redis cluster of two real nodes: a
/// subscriber on node A is listed by node B, its events reach B's subscribers, and it leaves
/// B's listing when it disconnects and when its node is SIGKILLed.
#[tokio::test]
async fn subscriptions_across_two_nodes_on_redis() {
    let redis = redis_support::RedisServer::start().await;
    let prefix = format!("t-msubs-{:08x}", rand::random::<u32>());
    let url = redis.url();
    let node = |id: &'static str| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            HeraldProcess::start(
                &[
                    "--mercure",
                    "--mercure-anonymous",
                    "--mercure-subscriptions",
                    "--engine",
                    &url,
                    "--redis-prefix",
                    &prefix,
                    "--node-id",
                    id,
                ],
                &[
                    ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
                    ("MERCURE_SUBSCRIBER_JWT_KEY", SECRET),
                ],
            )
            .await
        }
    };
    let mut a = node("a").await;
    let b = node("b").await;
    let selector = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";
    let bearer = format!(
        "Bearer {}",
        jwt(json!({"mercure": {"subscribe": [
            selector,
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
            END,
        ]}}))
    );
    // The watcher is on B.
    let mut watcher = subscribe(
        &b,
        &[("topic", selector), ("topic", END)],
        &[("authorization", &bearer)],
    )
    .await;
    let mut seen_ids = std::collections::HashSet::new();
    let books = "https://example.com/books/{id}";
    // A subscriber on A, with a payload in its token.
    let reader_token = jwt(json!({"mercure": {"subscribe": [], "payload": {"user": "ann"}}}));
    let reader = subscribe(
        &a,
        &[("topic", books)],
        &[("authorization", &format!("Bearer {reader_token}"))],
    )
    .await;
    // Its subscription event reaches B's watcher.
    let joined = next_for(&mut watcher, &mut seen_ids, |v| v["topic"] == books).await;
    assert_eq!(joined["active"], true);
    assert_eq!(joined["payload"], json!({"user": "ann"}));
    let subscriber = joined["subscriber"].as_str().unwrap().to_owned();
    let id = joined["id"].as_str().unwrap().to_owned();
    // B lists it: the whole collection, the topic's and the subscription itself.
    let list = |path: String| {
        let req = http_client()
            .get(b.url(&path))
            .header("authorization", &bearer);
        async move {
            let r = send(req).await;
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let listed = |body: &str, who: &str| -> bool {
        let v: Value = serde_json::from_str(body).unwrap();
        v["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subscriber"] == who && s["topic"] == books)
    };
    let (status, body) = list("/.well-known/mercure/subscriptions".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(listed(&body, &subscriber), "B lists A's subscriber: {body}");
    let (status, body) = list(format!(
        "/.well-known/mercure/subscriptions/{}",
        "https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(listed(&body, &subscriber), "{body}");
    let (status, body) = list(id.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (one["subscriber"].as_str(), one["payload"].clone()),
        (Some(subscriber.as_str()), json!({"user": "ann"}))
    );
    // A 1.0 collection path answers too (no 1.0 subscriber here).
    let (status, body) = list("/.well-known/mercure/subscriptions/Exact/urn%3Anone".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["subscriptions"], json!([]));
    // It disconnects: the end of its subscription reaches B, and B no longer lists it.
    drop(reader);
    let left = next_for(&mut watcher, &mut seen_ids, |v| {
        v["subscriber"] == subscriber.as_str()
    })
    .await;
    assert_eq!(left["active"], false);
    let gone = |who: String| {
        let list = &list;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (status, body) = list("/.well-known/mercure/subscriptions".into()).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                if !listed(&body, &who) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{who} still listed after {WAIT:?}: {body}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    gone(subscriber.clone()).await;
    // Another subscriber on A; A is SIGKILLed: B stops listing it.
    let _second = subscribe(&a, &[("topic", books)], &[]).await;
    let joined = next_for(&mut watcher, &mut seen_ids, |v| {
        v["topic"] == books && v["active"] == true
    })
    .await;
    let second = joined["subscriber"].as_str().unwrap().to_owned();
    let (_, body) = list("/.well-known/mercure/subscriptions".into()).await;
    assert!(listed(&body, &second), "{body}");
    a.sigkill().await;
    gone(second).await;
    // Nothing arrived twice up to a trailing marker.
    end(&b).await;
    loop {
        let e = watcher.next().await;
        if e.data == "end" {
            break;
        }
        assert!(
            seen_ids.insert(e.id.clone()),
            "event {} arrived twice",
            e.id
        );
    }
}

// ---- Hostile input, and what the audit of issue 14 found untested ----

/// Status and `Content-Type` of an answer, and its body.
async fn answer(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// Malformed encodings, methods the protocol does not have and patterns too costly to compile
/// get the protocol's answers (`text/plain`), and the hub keeps serving.
#[tokio::test]
async fn hostile_input_is_refused_in_the_protocol_s_terms() {
    let p = hub(&["--mercure-anonymous"]).await;
    let mut sub = subscribe(&p, &[("topic", "urn:h")], &[]).await;
    // Publishing: a % that is not a percent-encoding, bytes that are not UTF-8.
    for body in [
        "topic=urn:h&data=100%",
        "topic=urn:h&data=%ZZ",
        "topic=urn:h&data=%4",
        "topic=urn:h&id=%C3%28",
        "topic=%FF",
    ] {
        let (status, ct, text) = post(&p, Some(&publisher()), body.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(ct.starts_with("text/plain"), "{body}: {ct}");
    }
    // Subscribing: selectors are refused, not mended into other topics.
    for query in [
        "topic=%FF",
        "topic=urn%3Ah%C3%28",
        "match=%FF",
        "topic=urn:h%ZZ",
        "topic=urn:h&lastEventID=100%",
    ] {
        let r = send(http_client().get(p.url(&format!("/.well-known/mercure?{query}")))).await;
        let (status, ct, text) = answer(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {text}");
        assert!(ct.starts_with("text/plain"), "{query}: {ct}");
    }
    // Methods the protocol does not have: its 405, with Allow.
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = send(http_client().request(method.clone(), p.url("/.well-known/mercure"))).await;
        assert_eq!(r.headers()["allow"], "GET, HEAD, POST", "{method}");
        let (status, ct, _) = answer(r).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert!(ct.starts_with("text/plain"), "{method}: {ct}");
    }
    // A URL Pattern of more wildcards than compile in reasonable time is refused at once;
    // one at the bound compiles quickly.
    let costly = "*".repeat(65);
    let started = std::time::Instant::now();
    let (status, ct, _) =
        answer(try_subscribe(&p, &[("match_urlpattern", &costly)], &[]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(ct.starts_with("text/plain"), "{ct}");
    let bound = "*".repeat(64);
    let r = try_subscribe(&p, &[("match_urlpattern", &bound)], &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A Last-Event-ID of 10 KB, in the header or the query.
    let long = "a".repeat(10_000);
    let (status, ct, _) =
        answer(try_subscribe(&p, &[("topic", "urn:h")], &[("last-event-id", &long)]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(ct.starts_with("text/plain"), "{ct}");
    let (status, _, _) =
        answer(try_subscribe(&p, &[("topic", "urn:h"), ("lastEventID", &long)], &[]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Tokens expiring in the year 3000 are tokens like others, for subscribers too.
    let far_sub = jwt(json!({"exp": 32_503_680_000u64, "mercure": {"subscribe": ["urn:h"]}}));
    let mut far_subscriber = subscribe(
        &p,
        &[("topic", "urn:h")],
        &[("authorization", &format!("Bearer {far_sub}"))],
    )
    .await;
    let far = jwt(json!({"exp": 32_503_680_000u64, "mercure": {"publish": ["*"]}}));
    let (status, _, body) = post(
        &p,
        Some(&far),
        form(&[("topic", "urn:h"), ("data", "far"), ("private", "on")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(far_subscriber.next().await.data, "far");
    // A publisher may take an id of the hub's own form; it is the update's id.
    let taken = "urn:uuid:00000000-0000-4000-8000-000000000000";
    let (status, _, body) = post(
        &p,
        Some(&publisher()),
        form(&[("topic", "urn:h"), ("data", "taken"), ("id", taken)]),
    )
    .await;
    assert_eq!((status, body.trim_end()), (StatusCode::OK, taken));
    // The hub kept serving: the anonymous subscriber got the public update, not the private one.
    let e = sub.next().await;
    assert_eq!((e.id.as_str(), e.data.as_str()), (taken, "taken"));
}

/// A publisher's id may be any IRI: EventSource sends it back in `Last-Event-ID` as UTF-8.
#[tokio::test]
async fn a_non_ascii_publisher_id_resumes_through_the_header() {
    let p = hub(&["--mercure-anonymous"]).await;
    let first = "https://example.com/livres/été/1";
    publish(&p, &[("topic", "urn:i"), ("data", "one"), ("id", first)]).await;
    publish(
        &p,
        &[
            ("topic", "urn:i"),
            ("data", "two"),
            ("id", "https://example.com/livres/2"),
        ],
    )
    .await;
    let value = reqwest::header::HeaderValue::from_bytes(first.as_bytes()).unwrap();
    let r = send(
        http_client()
            .get(url(&p, &[("topic", "urn:i"), ("topic", END)]))
            .header("last-event-id", value),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["last-event-id"].as_bytes(), first.as_bytes());
    let mut resumed = Sub {
        headers: r.headers().clone(),
        events: Box::pin(
            r.bytes_stream()
                .eventsource()
                .map(|r| r.map_err(|e| e.to_string())),
        ),
    };
    end(&p).await;
    assert_eq!(resumed.until_end().await, ["two"]);
    // Not UTF-8: the protocol's 400.
    let r = send(http_client().get(url(&p, &[("topic", "urn:i")])).header(
        "last-event-id",
        reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
    ))
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// An id whose update the history no longer holds: what is retained, from `earliest`.
#[tokio::test]
async fn a_forgotten_id_resumes_from_the_earliest_retained() {
    let p = hub(&["--mercure-anonymous", "--history-size", "2"]).await;
    for n in 1..=4 {
        let (data, id) = (format!("u{n}"), format!("f{n}"));
        publish(&p, &[("topic", "urn:f"), ("data", &data), ("id", &id)]).await;
    }
    let q = [("topic", "urn:f"), ("topic", END)];
    let mut forgotten = subscribe(&p, &q, &[("last-event-id", "f1")]).await;
    assert_eq!(forgotten.headers["last-event-id"], "earliest");
    let mut kept = subscribe(&p, &q, &[("last-event-id", "f3")]).await;
    assert_eq!(kept.headers["last-event-id"], "f3");
    end(&p).await;
    // (Only two are retained: u3 and u4; `end` pushes u3 out of the history, not the stream.)
    assert_eq!(forgotten.until_end().await, ["u3", "u4"]);
    assert_eq!(kept.until_end().await, ["u4"]);
}

/// Herald's per-address limits apply to Mercure subscribers, answered in the protocol's terms.
#[tokio::test]
async fn subscribers_are_rate_limited_per_address() {
    let p = hub(&[
        "--mercure-anonymous",
        "--connect-rate-per-ip",
        "1/s:3",
        "--resume-rate-per-ip",
        "1/s:1",
    ])
    .await;
    let q = [("topic", "urn:l")];
    let _resumed = subscribe(&p, &q, &[("last-event-id", "earliest")]).await;
    let (status, ct, body) =
        answer(try_subscribe(&p, &q, &[("last-event-id", "earliest")]).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let _plain = subscribe(&p, &q, &[]).await;
    let r = try_subscribe(&p, &q, &[]).await;
    assert!(r.headers().contains_key("retry-after"));
    let (status, ct, body) = answer(r).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
}

/// `--publish-origins` (Mercure's `publish_origins`): pages on listed origins may publish, with
/// the cookie too; others may not, whatever their token.
#[tokio::test]
async fn publish_origins_apply_to_mercure_publishers() {
    let p = hub(&[
        "--mercure-anonymous",
        "--publish-origins",
        "https://app.example.com",
    ])
    .await;
    let mut sub = subscribe(&p, &[("topic", "urn:o")], &[]).await;
    let cookie = format!("mercureAuthorization={}", publisher());
    let from = |origin: &str, auth: (&str, String)| {
        http_client()
            .post(p.url("/.well-known/mercure"))
            .header("origin", origin)
            .header(auth.0, auth.1)
            .header("content-type", "application/x-www-form-urlencoded")
    };
    let r = send(
        from("https://app.example.com", ("cookie", cookie.clone())).body("topic=urn:o&data=listed"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let bearer = format!("Bearer {}", publisher());
    for (origin, auth) in [
        ("https://evil.example", ("cookie", cookie.clone())),
        ("https://evil.example", ("authorization", bearer.clone())),
    ] {
        let (status, ct, body) =
            answer(send(from(origin, auth).body("topic=urn:o&data=no")).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert!(ct.starts_with("text/plain"), "{ct}");
    }
    assert_eq!(sub.next().await.data, "listed");
    end(&p).await;
}

/// RS256 keys given as PEM text under Mercure's own environment names, the algorithm too (and
/// Mercure turned on by `HERALD_MERCURE`).
#[tokio::test]
async fn rs256_keys_under_mercure_s_environment_names() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let public = std::fs::read_to_string(fixtures.join("rsa_public.pem")).unwrap();
    let private = std::fs::read_to_string(fixtures.join("rsa_private.pem")).unwrap();
    let p = HeraldProcess::start(
        &[],
        &[
            ("HERALD_MERCURE", "true"),
            ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
            ("MERCURE_SUBSCRIBER_JWT_KEY", public.as_str()),
            ("MERCURE_SUBSCRIBER_JWT_ALG", "RS256"),
        ],
    )
    .await;
    let rs256 = encode(
        &Header::new(Algorithm::RS256),
        &json!({"mercure": {"subscribe": ["urn:rs"]}}),
        &EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut sub = subscribe(
        &p,
        &[("topic", "urn:rs")],
        &[("authorization", &format!("Bearer {rs256}"))],
    )
    .await;
    publish(
        &p,
        &[("topic", "urn:rs"), ("data", "private"), ("private", "on")],
    )
    .await;
    assert_eq!(sub.next().await.data, "private");
    // An HS256 token with the publisher's secret is not a subscriber's token here.
    let hs = jwt(json!({"mercure": {"subscribe": ["urn:rs"]}}));
    let r = try_subscribe(
        &p,
        &[("topic", "urn:rs")],
        &[("authorization", &format!("Bearer {hs}"))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// 1.0 subscribers' subscription events and the 1.0 paths of the subscriptions API
/// (`/subscriptions/{matchType}/{match}[/{subscriber}]`), read with a 1.0 access token from the
/// `__Secure-mercure_access_token` cookie; any other path or method gets the protocol's answer.
#[tokio::test]
async fn v1_subscription_events_and_the_1_0_paths() {
    let p = hub(&["--mercure-anonymous", "--mercure-subscriptions"]).await;
    let watcher_token = access_token(
        &reached(&p),
        json!([grant(
            &["subscribe"],
            json!([
                {"match_urlpattern": "/.well-known/mercure/subscriptions/*"},
                {"match": "/.well-known/mercure/subscriptions"},
                {"match": END}
            ])
        )]),
    );
    let bearer = format!("Bearer {watcher_token}");
    let mut watcher = subscribe(
        &p,
        &[
            (
                "match_urlpattern",
                "/.well-known/mercure/subscriptions/Exact/:match/:subscriber",
            ),
            ("match", END),
        ],
        &[("authorization", &bearer)],
    )
    .await;
    let reader = subscribe(&p, &[("match", "urn:v1:a b")], &[]).await;
    let mut seen = std::collections::HashSet::new();
    let joined = next_for(&mut watcher, &mut seen, |v| v["match"] == "urn:v1:a b").await;
    assert_eq!(
        (
            joined["type"].as_str(),
            joined["matchType"].as_str(),
            joined["active"].as_bool()
        ),
        (Some("Subscription"), Some("Exact"), Some(true))
    );
    assert!(
        joined.get("topic").is_none(),
        "1.0 documents carry match, not topic"
    );
    let subscriber = joined["subscriber"].as_str().unwrap().to_owned();
    let id = joined["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("/.well-known/mercure/subscriptions/Exact/urn%3Av1%3Aa%20b/urn%3Auuid%3A"),
        "{id}"
    );
    let cookie = format!("__Secure-mercure_access_token={watcher_token}");
    let get = |path: String| {
        let req = http_client().get(p.url(&path)).header("cookie", &cookie);
        async move { answer(send(req).await).await }
    };
    let (status, ct, body) = get(id.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ct, "application/ld+json");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            one["id"].as_str(),
            one["subscriber"].as_str(),
            one["match"].as_str()
        ),
        (
            Some(id.as_str()),
            Some(subscriber.as_str()),
            Some("urn:v1:a b")
        )
    );
    let (status, _, body) =
        get("/.well-known/mercure/subscriptions/Exact/urn%3Av1%3Aa%20b".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(list["subscriptions"][0]["subscriber"], subscriber.as_str());
    // Any other path below the API, any other method: the protocol's answers.
    let (status, ct, _) = get("/.well-known/mercure/subscriptions/Exact/a/b/c".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(ct.starts_with("text/plain"), "{ct}");
    let r = send(
        http_client()
            .post(p.url("/.well-known/mercure/subscriptions"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let (status, ct, _) = answer(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(ct.starts_with("text/plain"), "{ct}");
    // It leaves.
    drop(reader);
    let left = next_for(&mut watcher, &mut seen, |v| {
        v["subscriber"] == subscriber.as_str()
    })
    .await;
    assert_eq!(left["active"], false);
    // Nothing arrived twice up to a trailing marker.
    end(&p).await;
    loop {
        let e = watcher.next().await;
        if e.data == "end" {
            break;
        }
        assert!(seen.insert(e.id.clone()), "event {} arrived twice", e.id);
    }
}

/// CORS for subscribers (`--cors-origins`, `--cors-credentials`): a listed page may read the
/// stream and the headers that say where it starts (both generations' names), may send its
/// token in a header (the preflight), and an unlisted one gets no CORS grant.
#[tokio::test]
async fn cors_for_subscribers_and_publishers() {
    let p = hub(&[
        "--mercure-anonymous",
        "--cors-origins",
        "https://app.example.com",
        "--cors-credentials",
    ])
    .await;
    let q = [("topic", "urn:c"), ("lastEventID", "earliest")];
    let listed = try_subscribe(&p, &q, &[("origin", "https://app.example.com")]).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let h = listed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let exposed = h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in ["last-event-id", "mercure-last-event-id"] {
        assert!(exposed.split(',').any(|n| n.trim() == name), "{exposed}");
    }
    let unlisted = try_subscribe(&p, &q, &[("origin", "https://evil.example")]).await;
    assert!(unlisted
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let preflight = send(
        http_client()
            .request(reqwest::Method::OPTIONS, p.url("/.well-known/mercure"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            ),
    )
    .await;
    assert_eq!(preflight.status(), StatusCode::OK);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed.contains("authorization") && allowed.contains("last-event-id"),
        "{allowed}"
    );
}

/// Topics of 2,048 characters of any kind (four-byte ones: 8,192 bytes, the limit), exact and
/// through a template, once the request head may hold them percent-encoded (24 KiB).
#[tokio::test]
async fn topics_of_2048_four_byte_characters() {
    let p = hub(&["--mercure-anonymous", "--max-header-size", "64KiB"]).await;
    let topic = "🦀".repeat(2048);
    assert_eq!(topic.len(), 8192);
    let mut exact = subscribe(&p, &[("topic", &topic), ("topic", END)], &[]).await;
    let template = format!("{}{{x}}", "🦀".repeat(2040));
    let mut templated = subscribe(&p, &[("topic", &template), ("topic", END)], &[]).await;
    publish(&p, &[("topic", &topic), ("data", "crabs")]).await;
    let (status, _, _) = post(
        &p,
        Some(&publisher()),
        form(&[("topic", &format!("{topic}🦀"))]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one character more");
    end(&p).await;
    assert_eq!(exact.until_end().await, ["crabs"]);
    assert_eq!(templated.until_end().await, ["crabs"]);
}

/// Sends `request` as raw bytes and reads the whole answer (bounded).
async fn raw_exchange(p: &HeraldProcess, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(p.addr))
        .await
        .expect("connect in time")
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// What is refused before routing (a head too large, a head that is not HTTP, a foreign Host on
/// an open hub) is answered in the protocol's form on the hub's paths, in Herald's elsewhere.
#[tokio::test]
async fn refusals_before_routing_are_text_on_the_hub_paths() {
    // No publisher key: an open hub, which answers only to loopback names.
    let p = hub(&["--mercure-anonymous"]).await;
    let big = "a".repeat(20 * 1024);
    for (path, mercure) in [
        ("/.well-known/mercure?topic=urn:x", true),
        ("/.well-known/mercure/subscriptions", true),
        ("/api/sse?userId=u", false),
    ] {
        let too_large = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Pad: {big}\r\n\r\n");
        let malformed = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nno colon here\r\n\r\n"
        );
        let foreign =
            format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
        for (request, status) in [(too_large, "431"), (malformed, "400"), (foreign, "403")] {
            let answer = raw_exchange(&p, request.as_bytes()).await;
            let head = answer
                .split("\r\n\r\n")
                .next()
                .unwrap()
                .to_ascii_lowercase();
            assert!(
                head.starts_with(&format!("http/1.1 {status}")),
                "{path}: {answer:.300}"
            );
            let text = head.contains("content-type: text/plain");
            let json = head.contains("content-type: application/json");
            assert_eq!(
                (text, json),
                (mercure, !mercure),
                "{path} {status}: {answer:.300}"
            );
        }
    }
    // Not the hub: a path that only starts like it.
    let answer = raw_exchange(
        &p,
        b"GET /.well-known/mercurex HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer:.300}"
    );
    end(&p).await;
}
