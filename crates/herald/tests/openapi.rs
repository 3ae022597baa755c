//! The OpenAPI description at `/api/openapi.json` stays true: it lists exactly the routes the
//! router serves, and real answers of the real server match the schemas it documents.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::TestServer;

/// `(method, path)` of every route in `src/http/mod.rs`, read from the source.
fn routes_in_router() -> BTreeSet<(String, String)> {
    let src = include_str!("../src/http/mod.rs");
    let mut routes = BTreeSet::new();
    let mut rest = src;
    while let Some(pos) = rest.find(".route(") {
        rest = &rest[pos + 7..];
        let path = rest.split('"').nth(1).unwrap().to_owned();
        // The handler part runs up to the next `.route(` (or the end of the router).
        let end = rest.find(".route(").unwrap_or(rest.len());
        let body = &rest[..end];
        for method in ["get", "post"] {
            if body.contains(&format!("{method}(")) {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
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

#[test]
fn the_spec_lists_exactly_the_routes_of_the_router() {
    let from_router = routes_in_router();
    let from_spec = routes_in_spec(&spec());
    assert!(
        from_router.len() > 10,
        "route extraction broke: {from_router:?}"
    );
    // The router writes path parameters as {id}; the spec names them.
    let normalize = |set: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        set.iter()
            .map(|(m, p)| (m.clone(), p.replace("{userId}", "{id}")))
            .collect()
    };
    assert_eq!(normalize(&from_router), normalize(&from_spec));
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
    ];
    for (method, url, body) in cases {
        let path = url.split('?').next().unwrap();
        let spec_path = if path.starts_with("/api/sse/presence/users/") {
            "/api/sse/presence/users/{userId}"
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
