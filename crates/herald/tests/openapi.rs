//! The OpenAPI description at `/api/openapi.json` stays true: it lists exactly the routes the
//! router serves, and real answers of the real server match the schemas it documents.

mod support;

use std::collections::BTreeSet;

use axum::http::Method;
use axum::Router;
use herald::config::Config;
use herald::http::AppState;
use herald::Hub;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestServer;
use tower::ServiceExt;

/// Methods a route may answer. (HEAD comes with every GET in axum, so it is not probed.)
const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// A path as both sides can compare it: every `{parameter}` written `{}` (the router and the
/// spec name them differently).
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("a closed path parameter");
        out.push_str(&rest[..open]);
        out.push_str("{}");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// How the real router routes one request.
#[derive(Debug, PartialEq)]
enum Routed {
    /// A handler (or its middleware) answered, whatever the status.
    Served(StatusCode),
    /// The router's fallback: no such path.
    NoSuchPath,
    /// The path exists, not with this method.
    NoSuchMethod,
}

/// Sends `method path` (no body) through `router` in process, as from loopback, and tells
/// whether a route took it. Only the fallbacks' answers are read (a stream's body never ends).
async fn route(router: &Router, method: &Method, path: &str) -> Routed {
    let request = axum::http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", "localhost")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    if status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
        return Routed::Served(status);
    }
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match body["error"]["code"].as_str() {
        Some("not_found") if status == StatusCode::NOT_FOUND => Routed::NoSuchPath,
        Some("method_not_allowed") => Routed::NoSuchMethod,
        _ => Routed::Served(status),
    }
}

/// `(method, path)` of every route the router serves: the paths of its route table
/// (`herald::http::paths`, which the router is built from), each probed with every method
/// through the real router.
async fn routes_in_router(router: &Router, paths: &[&str]) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for path in paths {
        // Any value fills a path parameter.
        let concrete = normalize(path).replace("{}", "x");
        for method in &METHODS {
            match route(router, method, &concrete).await {
                Routed::Served(_) => {
                    routes.insert((method.as_str().to_lowercase(), normalize(path)));
                }
                Routed::NoSuchMethod => {}
                Routed::NoSuchPath => {
                    panic!("{path} is in the route table but the router does not serve it")
                }
            }
        }
    }
    routes
}

/// An open hub's router, in process, and its route table's paths.
async fn open_router() -> (Hub, Router, Vec<&'static str>) {
    let config = Config::default();
    let hub = Hub::from_config(&config, &herald::Lifecycle::new())
        .await
        .expect("start the hub");
    let state = AppState::new(hub.clone(), config.http.clone());
    let paths = herald::http::paths(&state);
    (hub, herald::http::router(state), paths)
}

fn spec() -> Value {
    serde_json::from_str(include_str!("../assets/openapi.json")).unwrap()
}

fn routes_in_spec(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.clone(), path.clone()));
        }
    }
    routes
}

/// Validates `instance` against `schema`, resolving `$ref`s inside the spec.
fn assert_matches(spec: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = spec.clone();
    let obj = root.as_object_mut().unwrap();
    obj.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    for (k, v) in schema.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not match the spec: {errors:?}"
    );
}

/// The documented schema for `status` of `method path`, resolving a `$ref`'d response.
fn response_schema(spec: &Value, method: &str, path: &str, status: StatusCode) -> Option<Value> {
    let responses = &spec["paths"][path][method]["responses"];
    let mut response = responses.get(status.as_str()).unwrap_or_else(|| {
        panic!("{method} {path} answered {status}, which the spec does not document")
    });
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        response = &spec["components"]["responses"][name];
    }
    response
        .get("content")
        .and_then(|c| c.get("application/json"))
        .map(|c| c["schema"].clone())
}

#[tokio::test]
async fn the_spec_lists_exactly_the_routes_of_the_router() {
    let (hub, router, paths) = open_router().await;
    let from_router = routes_in_router(&router, &paths).await;
    assert!(
        from_router.len() > 10,
        "route discovery broke: {from_router:?}"
    );
    let from_spec: BTreeSet<_> = routes_in_spec(&spec())
        .into_iter()
        .map(|(m, p)| (m, normalize(&p)))
        .collect();
    let missing_from_spec: Vec<_> = from_router.difference(&from_spec).collect();
    let missing_from_router: Vec<_> = from_spec.difference(&from_router).collect();
    assert!(
        missing_from_spec.is_empty() && missing_from_router.is_empty(),
        "served but not in assets/openapi.json: {missing_from_spec:?}; \
         in assets/openapi.json but not served: {missing_from_router:?}"
    );
    // Every documented route reaches a handler of the real router, asked directly (not through
    // the route table).
    for (method, path) in &from_spec {
        let method: Method = method.to_uppercase().parse().unwrap();
        let routed = route(&router, &method, &path.replace("{}", "x")).await;
        assert!(
            matches!(routed, Routed::Served(_)),
            "{method} {path}: {routed:?}"
        );
    }
    // The probe tells the fallbacks apart from handlers: an unlisted path is the 404 fallback,
    // an unlisted method on a listed path the 405 one.
    assert_eq!(
        route(&router, &Method::GET, "/api/sse/no-such-endpoint").await,
        Routed::NoSuchPath
    );
    assert_eq!(route(&router, &Method::GET, "/").await, Routed::NoSuchPath);
    assert_eq!(
        route(&router, &Method::DELETE, "/api/sse/stats").await,
        Routed::NoSuchMethod
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    let spec = spec();
    let srv = TestServer::start().await;
    let served: Value = srv.get_json("/api/openapi.json").await.1;
    assert_eq!(served, spec, "the server serves the committed spec");

    let mut alice = srv.subscribe("userId=alice&channels=news").await;
    assert_eq!(alice.headers["content-type"], "text/event-stream");
    let connection = alice.connection_id.clone();

    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "post",
            "/api/sse/message",
            Some(json!({"event": "n", "data": {"a": 1}, "users": ["alice"]})),
        ),
        ("post", "/api/sse/message", Some(json!({"event": "n"}))),
        (
            "post",
            "/api/sse/message",
            Some(json!({"data": "x".repeat(70_000), "broadcast": true})),
        ),
        (
            "post",
            "/api/sse/send",
            Some(json!({"data": 1, "channels": ["news"]})),
        ),
        (
            "post",
            "/api/sse",
            Some(json!({"data": 1, "broadcast": true})),
        ),
        (
            "post",
            "/api/sse/messages",
            Some(json!([{"data": 1, "broadcast": true}, {"data": 2}])),
        ),
        ("post", "/api/sse/messages", Some(json!({"data": 1}))),
        ("get", "/api/sse/stats", None),
        ("get", "/api/sse/presence?channel=news", None),
        ("get", "/api/sse/presence", None),
        ("get", "/api/sse/presence/users/alice", None),
        ("get", "/api/sse/presence/users/nobody", None),
        (
            "post",
            "/api/sse/disconnect",
            Some(json!({"connections": [connection]})),
        ),
        ("post", "/api/sse/disconnect", Some(json!({}))),
        ("post", "/api/sse/disconnect-all", Some(json!({}))),
        ("get", "/healthz", None),
        ("get", "/readyz", None),
        ("get", "/api/sse?channels=bad%20name", None),
        ("post", "/api/webhooks/nope", Some(json!({}))),
    ];
    for (method, url, body) in cases {
        let path = url.split('?').next().unwrap();
        let spec_path = if path.starts_with("/api/sse/presence/users/") {
            "/api/sse/presence/users/{userId}"
        } else if path.starts_with("/api/webhooks/") {
            "/api/webhooks/{name}"
        } else {
            path
        };
        let mut req = srv
            .http
            .request(method.to_uppercase().parse().unwrap(), srv.url(url));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let (_, answer) = support::read_json(r).await;
        let schema = response_schema(&spec, method, spec_path, status)
            .unwrap_or_else(|| panic!("{method} {url}: no JSON schema for {status}"));
        assert_matches(
            &spec,
            &schema,
            &answer,
            &format!("{method} {url} -> {status}"),
        );
    }
    // Stats with a non-empty history, which the schema also describes.
    let stats = srv.stats().await;
    assert!(stats["history"]["events"].as_u64().unwrap() > 0);
    assert_matches(
        &spec,
        &json!({"$ref": "#/components/schemas/Stats"}),
        &stats,
        "stats",
    );

    // Request bodies the server accepts are valid by the spec, and one it refuses is not.
    let request = json!({"$ref": "#/components/schemas/PublishRequest"});
    assert_matches(
        &spec,
        &request,
        &json!({"event": "a:b", "data": null, "users": ["u", 7], "fallback": "broadcast"}),
        "request",
    );
    let mut root = spec.clone();
    root.as_object_mut()
        .unwrap()
        .insert("$ref".into(), json!("#/components/schemas/PublishRequest"));
    let v = jsonschema::validator_for(&root).unwrap();
    assert!(!v.is_valid(&json!({"event": "a b", "data": 1})));
    assert!(!v.is_valid(&json!({"user": "x", "data": 1})));

    // Non-JSON documents: the content types the spec names.
    for (url, ctype) in [
        ("/metrics", "application/openmetrics-text"),
        ("/sse-test", "text/html"),
        ("/sse-client", "text/html"),
        ("/admin", "text/html"),
        ("/api/sse/stats/stream", "text/event-stream"),
    ] {
        let r = srv.http.get(srv.url(url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
    }
    drop(alice.try_next().await);
}
