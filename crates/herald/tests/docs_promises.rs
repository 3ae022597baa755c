//! What the docs promise, checked against the real server and the source, so the two cannot
//! drift apart unnoticed: every error is JSON with the security headers, and every error code
//! the code can send is listed in docs/api.md.

mod support;

use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a fresh connection and reads the whole answer (the server closes).
async fn raw(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_json_error(answer: &str, status: &str, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    let lower = answer.to_ascii_lowercase();
    for header in [
        "content-type: application/json",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "x-frame-options: deny",
    ] {
        assert!(lower.contains(header), "missing {header}: {answer}");
    }
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(value["error"]["code"], code, "{answer}");
    assert!(value["error"]["message"].is_string());
}

#[tokio::test]
async fn refused_heads_get_json_errors_with_the_security_headers() {
    let server = TestServer::start().await;
    let mut big = b"GET /api/sse/stats HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    let answer = raw(&server, &big).await;
    assert_json_error(&answer, "431", "headers_too_large");

    let answer = raw(&server, b"GARBAGE\r\n\r\n").await;
    assert_json_error(&answer, "400", "malformed_request");
    let answer = raw(&server, b"GET / HTTP/1.1\r\nbad header line\r\n\r\n").await;
    assert_json_error(&answer, "400", "malformed_request");

    // The HTTP/2 preface is not "malformed": it goes to the HTTP/2 server.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 9];
    tokio::time::timeout(WAIT, stream.read_exact(&mut first))
        .await
        .expect("no HTTP/2 frame")
        .unwrap();
    assert_eq!(
        first[3], 0x4,
        "an HTTP/2 SETTINGS frame comes first: {first:?}"
    );
}

#[tokio::test]
async fn cors_preflights_carry_the_security_headers() {
    let mut config = herald::config::Config::default();
    config.http.cors_origins = vec!["http://app.example".into()];
    let server = TestServer::with_config(config).await;
    let answer = raw(
        &server,
        b"OPTIONS /api/sse/message HTTP/1.1\r\nHost: localhost\r\nOrigin: http://app.example\r\n\
          Access-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: idempotency-key\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lower = answer.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{answer}");
    assert!(
        lower.contains("x-content-type-options: nosniff"),
        "{answer}"
    );
    assert!(lower.contains("x-frame-options: deny"), "{answer}");
    assert!(lower.contains("idempotency-key"), "{answer}");
}

/// Every `"code"` the server can answer with, found in the source, is in docs/api.md's
/// error table (or its prose).
#[test]
fn every_error_code_in_the_source_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("../../docs/api.md")).unwrap();
    let mut sources = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut codes = std::collections::BTreeSet::new();
    for (_, text) in &sources {
        // `ApiError::new(StatusCode::X, "code"`, `ApiError::bad_request("code"`,
        // `with_code("code"`, `=> "code"` (auth error codes), `"code": "x"` in JSON literals.
        let squashed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for marker in [
            "ApiError::bad_request( \"",
            "ApiError::bad_request(\"",
            "with_code( \"",
            "with_code(\"",
            "StatusCode::",
        ] {
            for (i, _) in squashed.match_indices(marker) {
                let rest = &squashed[i + marker.len()..];
                let rest = if marker == "StatusCode::" {
                    // `StatusCode::FORBIDDEN, "code"`: only in ApiError::new calls.
                    if !squashed[..i].trim_end().ends_with("ApiError::new(") {
                        continue;
                    }
                    match rest.split_once(", \"") {
                        Some((status, after)) if !status.contains(' ') => after,
                        _ => continue,
                    }
                } else {
                    rest
                };
                if let Some((code, _)) = rest.split_once('"') {
                    if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    {
                        codes.insert(code.to_owned());
                    }
                }
            }
        }
    }
    // Codes written as data rather than through the helpers above.
    for extra in [
        "headers_too_large",
        "malformed_request",
        "invalid_token",
        "unsupported_algorithm",
        "unknown_key",
        "invalid_signature",
        "token_expired",
        "token_not_yet_valid",
        "invalid_audience",
        "invalid_issuer",
        "invalid_claims",
    ] {
        assert!(
            sources
                .iter()
                .any(|(_, t)| t.contains(&format!("\"{extra}\""))),
            "{extra} is no longer in the source: drop it from this list"
        );
        codes.insert(extra.to_owned());
    }
    assert!(codes.len() > 25, "the scan found too few codes: {codes:?}");
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !docs.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes the server sends but docs/api.md does not list: {missing:?}"
    );
}

/// The `curl` lines of README.md and docs/ that talk to a local hub, extracted from their shell
/// blocks (continuation lines joined).
fn documented_curls() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    let mut curls = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut in_shell = false;
        let mut joined = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                in_shell = matches!(trimmed, "```sh" | "```bash" | "```shell");
                continue;
            }
            if !in_shell {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                joined.push_str(head);
                joined.push(' ');
                continue;
            }
            joined.push_str(trimmed);
            let command = std::mem::take(&mut joined);
            if command.starts_with("curl ") && command.contains("http://127.0.0.1:8080") {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                curls.push((name, command));
            }
        }
    }
    curls
}

/// Every documented `curl` against a local hub works on a fresh default hub (the real binary):
/// answers 2xx with JSON (a stream starts with `retry:`).
#[tokio::test]
async fn documented_curl_examples_work_against_the_binary() {
    let hub = support::HeraldProcess::start(&[], &[]).await;
    let base = format!("http://{}", hub.addr);
    let curls = documented_curls();
    assert!(curls.len() >= 8, "too few curl examples found: {curls:?}");
    for (file, command) in curls {
        let streaming = command.contains(" -N");
        let command = command.replace("http://127.0.0.1:8080", &base);
        // Streams are cut after a moment; everything else must finish on its own.
        let command = format!(
            "{} --silent --show-error --max-time {} --write-out '\\n%{{http_code}}'",
            command.split(" #").next().unwrap().trim(),
            if streaming { 1 } else { 10 }
        );
        let out = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new("sh")
                .args(["-c", &command])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{file}: {command} did not finish"))
        .expect("run sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        assert!(
            status.starts_with('2'),
            "{file}: {command} answered {status}: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if streaming {
            assert!(body.starts_with("retry: "), "{file}: {command}: {body}");
        } else {
            let value: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{file}: {command}: not JSON ({e}): {body}"));
            assert!(value.get("error").is_none(), "{file}: {command}: {value}");
        }
    }
}
