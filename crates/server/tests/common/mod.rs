//! Shared by the HTTP-level tests: the unit tests' byte-level tokenizer, a slow scripted
//! [`Generator`], a server on a real socket, and a minimal raw HTTP/1.1 client (raw so that
//! tests can send what a well-behaved client would not: huge headers, many headers).
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::{Read, Write};
use tokenspeed_engine::{RequestEvent, TokenEvent};
use tokenspeed_scheduler::{FinishReason, SchedulerStats};
use tokenspeed_server::{EventSink, GenerateRequest, Generator, ServerBuilder, ServerConfig};
use tokio::net::TcpListener;

// The unit tests' tokenizer builder refers to `crate::tokenizer`: each test crate's root
// re-exports `tokenspeed_server::tokenizer` for it.
#[path = "../../src/test_support.rs"]
pub mod test_support;

/// Id of the merged token "hello" in the test tokenizer (bytes are 0..=255, merges follow).
pub const HELLO: u32 = 259;

/// Answers each request with `tokens` "hello" tokens, one every `delay`, from a thread of its
/// own (like the engine's forwarder).
pub struct SlowGenerator {
    pub tokens: usize,
    pub delay: Duration,
    pub aborted: Mutex<Vec<u64>>,
}

impl SlowGenerator {
    pub fn new(tokens: usize, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            tokens,
            delay,
            aborted: Mutex::new(Vec::new()),
        })
    }
}

impl Generator for SlowGenerator {
    fn submit(&self, request: GenerateRequest, sink: EventSink) -> Result<(), String> {
        let (n, delay) = (self.tokens.min(request.spec.max_new_tokens), self.delay);
        std::thread::spawn(move || {
            for _ in 0..n {
                std::thread::sleep(delay);
                let token = TokenEvent {
                    token: HELLO,
                    logprob: None,
                    top_logprobs: Vec::new(),
                };
                if !sink.send(RequestEvent::Token(token)) {
                    return;
                }
            }
            sink.send(RequestEvent::Finished {
                reason: FinishReason::Length,
                num_cached_tokens: 0,
            });
        });
        Ok(())
    }

    fn abort(&self, id: u64) {
        self.aborted.lock().unwrap().push(id);
    }

    fn stats(&self) -> SchedulerStats {
        SchedulerStats::default()
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The API over `generator` with the byte-level test tokenizer.
pub fn app(generator: Arc<dyn Generator>, config: ServerConfig) -> axum::Router {
    let tokenizer = Arc::new(test_support::byte_level_tokenizer());
    ServerBuilder::new(generator, tokenizer)
        .config(config)
        .router()
}

/// Serves `router` on an ephemeral local port (until the test's runtime ends).
pub async fn spawn_server(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` with
/// `Connection: close`, and reads the whole response (chunked bodies are left as sent).
pub async fn raw_request(address: SocketAddr, head: &str, body: &[u8]) -> RawResponse {
    let request = format!(
        "{head}\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let body = body.to_vec();
    // Blocking std sockets on the blocking pool: no extra tokio features for the tests.
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // The server may answer (e.g. 431, 413) and close before reading everything.
        let _ = stream.write_all(request.as_bytes());
        let _ = stream.write_all(&body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        raw
    });
    parse_response(&raw.await.unwrap())
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `POST path` with a JSON body and optional bearer key.
pub async fn post_json(
    address: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    key: Option<&str>,
) -> RawResponse {
    let mut head = format!("POST {path} HTTP/1.1\r\nContent-Type: application/json");
    if let Some(key) = key {
        head.push_str(&format!("\r\nAuthorization: Bearer {key}"));
    }
    raw_request(address, &head, body.to_string().as_bytes()).await
}
