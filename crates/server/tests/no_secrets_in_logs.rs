#![allow(clippy::unwrap_used)] // tests may unwrap
//! No secret reaches the logs: requests with right and wrong keys, failing and streamed
//! requests, at the most verbose level, log nothing of the key or the `Authorization`
//! header; the config's debug form hides the key.

mod common;

pub use tokenspeed_server::tokenizer; // for common::test_support

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{app, post_json, raw_request, spawn_server, SlowGenerator};
use serde_json::json;
use tokenspeed_server::ServerConfig;

const KEY: &str = "sk-SECRET-5f2b9c";

/// Collects every log line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_key_nor_the_authorization_header_is_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .init();
    let config = ServerConfig {
        api_key: Some(KEY.into()),
        ..ServerConfig::default()
    };
    tracing::info!(config = ?config, "starting");
    let address = spawn_server(app(SlowGenerator::new(3, Duration::from_millis(1)), config)).await;
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
    let stream = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
    let bad = json!({"messages": "not a list"});
    for key in [Some(KEY), Some("sk-SECRET-wrong"), None] {
        post_json(address, "/v1/chat/completions", &chat, key).await;
        post_json(address, "/v1/chat/completions", &stream, key).await;
        post_json(address, "/v1/chat/completions", &bad, key).await;
        post_json(address, "/v1/nope", &bad, key).await;
    }
    let basic = format!("GET /v1/models HTTP/1.1\r\nAuthorization: Basic {KEY}");
    raw_request(address, &basic, b"").await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works: every response was logged.
    assert!(logs.matches("request").count() >= 13, "{logs}");
    assert!(!logs.contains("SECRET"), "a key reached the logs:\n{logs}");
    assert!(!logs.to_lowercase().contains("bearer"), "{logs}");
    assert!(logs.contains("<redacted>"), "{logs}");
}
