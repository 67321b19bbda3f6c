//! Mounting the TokenSpeed API inside another axum application.
//!
//! `cargo run -p tokenspeed-server --example mount -- MODEL_DIR [PORT]` serves the OpenAI routes
//! under `/llm` (e.g. `POST /llm/v1/chat/completions`) next to the host application's own
//! routes. `MODEL_DIR` needs a `tokenizer.json` (the chat template comes from the directory, or
//! the built-in Qwen3.5 one). To keep the example self-contained the generator here is a toy
//! that echoes the prompt's last tokens; a real application passes an
//! [`EngineGenerator`](tokenspeed_server::EngineGenerator) over its engine instead.

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokenspeed_engine::{RequestEvent, TokenEvent};
use tokenspeed_scheduler::{FinishReason, SchedulerStats};
use tokenspeed_server::{EventSink, GenerateRequest, Generator, ServerBuilder, ServerConfig};

/// Answers with the last `max_tokens` tokens of the prompt.
struct Echo;

impl Generator for Echo {
    fn submit(&self, request: GenerateRequest, sink: EventSink) -> Result<(), String> {
        let prompt = &request.spec.prompt;
        let start = prompt.len().saturating_sub(request.spec.max_new_tokens);
        for &token in &prompt[start..] {
            let event = TokenEvent {
                token,
                logprob: None,
                top_logprobs: Vec::new(),
            };
            sink.send(RequestEvent::Token(event));
        }
        sink.send(RequestEvent::Finished {
            reason: FinishReason::Length,
            num_cached_tokens: 0,
        });
        Ok(())
    }

    fn abort(&self, _id: u64) {}

    fn stats(&self) -> SchedulerStats {
        SchedulerStats::default()
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let model_dir = PathBuf::from(args.next().ok_or("usage: mount MODEL_DIR [PORT]")?);
    let port: u16 = args
        .next()
        .map_or(Ok(8080), |p| p.parse().map_err(|e| format!("{e}")))?;
    let config = ServerConfig {
        served_model_name: "echo".into(),
        ..ServerConfig::default()
    };
    let api = ServerBuilder::from_model_dir(Arc::new(Echo), &model_dir, None)?
        .config(config)
        .router();
    let app = Router::new()
        .route("/", get(|| async { "the host application" }))
        .nest("/llm", api);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    println!("host app on http://127.0.0.1:{port}/, TokenSpeed API under /llm/v1");
    tokenspeed_server::serve::serve(listener, app, tokenspeed_server::serve::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
