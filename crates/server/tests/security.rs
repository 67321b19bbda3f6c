#![allow(clippy::unwrap_used)] // tests may unwrap
//! Security over real HTTP: the API key guards every route but `/health` (unknown routes and
//! wrong methods too: 401 before 404/405), header and body size limits answer 431/413, and a
//! chat template cannot read files from request data.

mod common;

pub use tokenspeed_server::tokenizer; // for common::test_support

use std::time::Duration;

use common::{app, post_json, raw_request, spawn_server, SlowGenerator};
use serde_json::json;
use tokenspeed_server::template::{ChatInput, ChatTemplate, TemplateOrigin};
use tokenspeed_server::ServerConfig;

const KEY: &str = "sk-test-0123456789";

fn config() -> ServerConfig {
    ServerConfig {
        api_key: Some(KEY.into()),
        max_body_bytes: 4096,
        ..ServerConfig::default()
    }
}

/// Every route the API has (and some it does not), with a body that would be valid.
fn routes() -> Vec<(&'static str, &'static str, Option<serde_json::Value>)> {
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    vec![
        ("GET", "/v1/models", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("POST", "/tokenize", Some(json!({"prompt": "hi"}))),
        ("POST", "/detokenize", Some(json!({"tokens": [104, 105]}))),
        ("POST", "/v1/chat/completions", Some(chat)),
        (
            "POST",
            "/v1/completions",
            Some(json!({"prompt": "hi", "max_tokens": 2})),
        ),
        ("GET", "/v1/nope", None),
        ("POST", "/admin", Some(json!({}))),
        ("DELETE", "/v1/models", None),
        ("GET", "/v1/chat/completions", None),
    ]
}

async fn call(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &Option<serde_json::Value>,
    authorization: Option<&str>,
) -> common::RawResponse {
    let mut head = format!("{method} {path} HTTP/1.1\r\nContent-Type: application/json");
    if let Some(value) = authorization {
        head.push_str(&format!("\r\nAuthorization: {value}"));
    }
    let body = body.as_ref().map_or(String::new(), |b| b.to_string());
    raw_request(address, &head, body.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_guards_every_route_but_health() {
    let generator = SlowGenerator::new(2, Duration::from_millis(1));
    let address = spawn_server(app(generator, config())).await;
    let wrong = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {KEY}x")),                    // longer
        Some(format!("Bearer {}", &KEY[..KEY.len() - 1])), // a prefix
        Some(format!("Basic {KEY}")),
        Some(format!("bearer{KEY}")),
        Some(KEY.to_string()),
    ];
    for (method, path, body) in routes() {
        for authorization in &wrong {
            let response = call(address, method, path, &body, authorization.as_deref()).await;
            assert_eq!(response.status, 401, "{method} {path} {authorization:?}");
            let error = &response.json()["error"];
            assert_eq!(error["type"], "authentication_error", "{method} {path}");
            assert!(
                !response.body.contains(KEY),
                "the key is echoed: {}",
                response.body
            );
        }
        let right = format!("Bearer {KEY}");
        let response = call(address, method, path, &body, Some(&right)).await;
        assert_ne!(response.status, 401, "{method} {path}: {}", response.body);
        let expected_ok = !path.contains("nope") && path != "/admin" && method != "DELETE";
        let expected_ok = expected_ok && !(method == "GET" && path.ends_with("completions"));
        assert_eq!(
            response.status == 200,
            expected_ok,
            "{method} {path}: {response:?}"
        );
    }
    let health = call(address, "GET", "/health", &None, None).await;
    assert_eq!(health.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_configured_routes_are_open() {
    let generator = SlowGenerator::new(2, Duration::from_millis(1));
    let address = spawn_server(app(generator, ServerConfig::default())).await;
    for (method, path, body) in routes().into_iter().take(7) {
        let response = call(address, method, path, &body, None).await;
        assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_are_refused() {
    let generator = SlowGenerator::new(2, Duration::from_millis(1));
    let address = spawn_server(app(generator, config())).await;
    let auth = format!("Authorization: Bearer {KEY}");
    // Too many headers (hyper allows 100).
    let many: String = (0..150).map(|i| format!("\r\nX-Filler-{i}: {i}")).collect();
    let response = raw_request(
        address,
        &format!("GET /v1/models HTTP/1.1\r\n{auth}{many}"),
        b"",
    )
    .await;
    assert_eq!(response.status, 431, "{response:?}");
    // One header larger than the request-head buffer (hyper: ~400 KiB).
    let huge = "a".repeat(1 << 20);
    let head = format!("GET /v1/models HTTP/1.1\r\n{auth}\r\nX-Huge: {huge}");
    let response = raw_request(address, &head, b"").await;
    assert_eq!(response.status, 431, "{}", response.status);
    // A body over the limit: 413 with the OpenAI error, before the handler reads it all.
    let big = json!({"prompt": "x".repeat(8192), "max_tokens": 1});
    let response = post_json(address, "/v1/completions", &big, Some(KEY)).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "request_too_large");
    // A request within the limits still works on the same server.
    let small = json!({"prompt": "hi", "max_tokens": 2});
    assert_eq!(
        post_json(address, "/v1/completions", &small, Some(KEY))
            .await
            .status,
        200
    );
}

/// Request data never names a file: a template that includes or imports a name taken from
/// the request finds no such template (the environment has no loader; only the server's own
/// template exists), and the file's content never appears.
#[test]
fn a_template_cannot_read_files_from_request_data() {
    let secret = std::env::temp_dir().join("tokenspeed-template-secret.txt");
    std::fs::write(&secret, "TOP-SECRET-CONTENT").unwrap();
    let path = secret.to_str().unwrap().to_string();
    let sources = [
        "{% include messages[0]['content'] %}",
        "{% import messages[0]['content'] as m %}{{ m }}",
        "{% from messages[0]['content'] import x %}{{ x }}",
        "{% extends messages[0]['content'] %}",
        "{% include tools[0] %}",
        "{% include secret_file %}",
    ];
    let messages = [json!({"role": "user", "content": path})];
    let tools = [json!(path)];
    let kwargs = json!({"secret_file": path});
    for source in sources {
        let template = ChatTemplate::from_source(source.into(), TemplateOrigin::Builtin).unwrap();
        let input = ChatInput {
            messages: &messages,
            tools: Some(&tools),
            add_generation_prompt: true,
            kwargs: kwargs.as_object(),
        };
        match template.render(&input) {
            Ok(text) => panic!("{source} rendered {text:?}"),
            Err(e) => assert!(!e.to_string().contains("TOP-SECRET"), "{source}: {e}"),
        }
    }
    std::fs::remove_file(secret).unwrap();
}
