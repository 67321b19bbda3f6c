#![allow(clippy::unwrap_used)] // tests may unwrap
//! Overload over real HTTP: with `max_pending` generations admitted and a slow engine, the
//! excess of a burst gets 429 + `Retry-After` + the OpenAI error at once, every admitted
//! request completes in full, and the permits come back for the next burst.

mod common;

pub use tokenspeed_server::tokenizer; // for common::test_support

use std::time::{Duration, Instant};

use common::{app, post_json, spawn_server, SlowGenerator};
use serde_json::json;
use tokenspeed_server::ServerConfig;

const MAX_PENDING: usize = 4;
const TOKENS: usize = 20;

async fn burst(address: std::net::SocketAddr, size: usize) -> (Vec<String>, Vec<Duration>) {
    let requests = (0..size).map(|i| {
        let stream = i % 2 == 0; // streamed and whole responses hold permits alike
        let body = json!({"prompt": "say hello", "max_tokens": TOKENS, "stream": stream});
        tokio::spawn(async move {
            let started = Instant::now();
            let response = post_json(address, "/v1/completions", &body, None).await;
            (response, stream, started.elapsed())
        })
    });
    let mut ok = Vec::new();
    let mut refused_after = Vec::new();
    for handle in requests.collect::<Vec<_>>() {
        let (response, stream, elapsed) = handle.await.unwrap();
        match response.status {
            200 => {
                let text = "hello".repeat(TOKENS);
                // Streams carry the text in pieces; whole answers in one string.
                let full = if stream {
                    response.body.matches("hello").count() == TOKENS
                        && response.body.contains("[DONE]")
                } else {
                    response.json()["choices"][0]["text"] == text.as_str()
                };
                assert!(full, "incomplete answer: {}", response.body);
                ok.push(response.body);
            }
            429 => {
                assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
                let error = &response.json()["error"];
                assert_eq!(error["type"], "rate_limit_error", "{response:?}");
                refused_after.push(elapsed);
            }
            other => panic!("status {other}: {response:?}"),
        }
    }
    (ok, refused_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_excess_of_a_burst_gets_429_and_every_admitted_request_completes() {
    // 20 tokens x 60 ms: each admitted request runs 1.2 s, much longer than the burst takes
    // to arrive, so exactly MAX_PENDING are admitted.
    let generator = SlowGenerator::new(TOKENS, Duration::from_millis(60));
    let config = ServerConfig {
        max_pending: MAX_PENDING,
        ..ServerConfig::default()
    };
    let address = spawn_server(app(generator.clone(), config)).await;
    for round in 0..2 {
        let (ok, refused_after) = burst(address, 3 * MAX_PENDING).await;
        assert_eq!(ok.len(), MAX_PENDING, "round {round}");
        assert_eq!(refused_after.len(), 2 * MAX_PENDING, "round {round}");
        // Refusals are immediate, not queued behind the running requests.
        let slowest = refused_after.iter().max().unwrap();
        assert!(
            *slowest < Duration::from_millis(900),
            "round {round}: {slowest:?}"
        );
    }
    // Nothing was aborted: every admitted generation ran to its end.
    assert!(generator.aborted.lock().unwrap().is_empty());
}
