//! Route tests against a scripted [`Generator`]: tool calls and reasoning in both response
//! forms, admission (429 + Retry-After), abort on a dropped stream, 503 and 500.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tokenspeed_engine::{RequestEvent, TokenEvent};
use tokenspeed_scheduler::{FinishReason, SchedulerStats};
use tower::ServiceExt;

use crate::generator::{EventSink, GenerateRequest, Generator};
use crate::state::{ServerBuilder, ServerConfig};
use crate::test_support::byte_level_tokenizer;
use crate::tokenizer::Tokenizer;

/// Answers every request with the tokens of `script` (or hangs, or fails).
pub(super) struct Scripted {
    tokens: Vec<u32>,
    /// The prompts submitted, in order.
    pub(super) prompts: Mutex<Vec<Vec<u32>>>,
    hang: bool,
    fail: Option<String>,
    healthy: AtomicBool,
    aborted: Mutex<Vec<u64>>,
    sinks: Mutex<Vec<EventSink>>,
}

impl Scripted {
    pub(super) fn new(tokenizer: &Tokenizer, script: &str) -> Self {
        Self {
            tokens: tokenizer.encode(script, false).unwrap(),
            prompts: Mutex::new(Vec::new()),
            hang: false,
            fail: None,
            healthy: AtomicBool::new(true),
            aborted: Mutex::new(Vec::new()),
            sinks: Mutex::new(Vec::new()),
        }
    }
}

impl Generator for Scripted {
    fn submit(&self, request: GenerateRequest, sink: EventSink) -> Result<(), String> {
        self.prompts
            .lock()
            .unwrap()
            .push(request.spec.prompt.clone());
        if let Some(message) = &self.fail {
            sink.send(RequestEvent::Failed(message.clone()));
            return Ok(());
        }
        if self.hang {
            self.sinks.lock().unwrap().push(sink); // keeps the channel open, sends nothing
            return Ok(());
        }
        let n = self.tokens.len().min(request.spec.max_new_tokens);
        for &token in &self.tokens[..n] {
            let event = TokenEvent {
                token,
                logprob: request.logprobs.map(|_| -0.5),
                top_logprobs: Vec::new(),
            };
            sink.send(RequestEvent::Token(event));
        }
        let reason = if n < self.tokens.len() {
            FinishReason::Length
        } else {
            FinishReason::Stop { token: None }
        };
        sink.send(RequestEvent::Finished {
            reason,
            num_cached_tokens: 3,
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
        match self.healthy.load(Ordering::Relaxed) {
            true => Ok(()),
            false => Err("the engine stopped: test".into()),
        }
    }
}

const TOOL_SCRIPT: &str = "Checking.</think>\n\nLet me look.<tool_call>\n<function=get_weather>\n\
    <parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n\
    </tool_call>";

pub(super) fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}])
}

pub(super) fn app(generator: Arc<Scripted>, config: ServerConfig) -> Router {
    let tokenizer = Arc::new(byte_level_tokenizer());
    ServerBuilder::new(generator, tokenizer)
        .config(config)
        .router()
}

pub(super) fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub(super) async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The JSON payloads of an SSE body, without `[DONE]`.
pub(super) fn sse_payloads(body: &str) -> Vec<Value> {
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn chat_body(stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "weather?"}], "tools": tools(),
           "stream": stream, "stream_options": {"include_usage": true}})
}

#[tokio::test]
async fn tool_call_and_reasoning_whole() {
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), TOOL_SCRIPT));
    let app = app(generator, ServerConfig::default());
    let (status, body) = send(&app, post("/v1/chat/completions", chat_body(false))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["reasoning_content"], "Checking.");
    assert_eq!(message["reasoning"], "Checking.");
    assert_eq!(message["content"], "Let me look.");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris", "days": 3}));
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
}

#[tokio::test]
async fn tool_call_and_reasoning_streamed() {
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), TOOL_SCRIPT));
    let app = app(generator, ServerConfig::default());
    let (status, body) = send(&app, post("/v1/chat/completions", chat_body(true))).await;
    assert_eq!(status, StatusCode::OK);
    let chunks = sse_payloads(&body);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (mut reasoning, mut content, mut arguments) = (String::new(), String::new(), String::new());
    let mut starts = Vec::new();
    let mut finish = Vec::new();
    for chunk in &chunks {
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        reasoning += delta["reasoning_content"].as_str().unwrap_or("");
        content += delta["content"].as_str().unwrap_or("");
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            if let Some(id) = call.get("id") {
                // id, type and name come first, with empty arguments.
                assert_eq!(call["function"]["arguments"], "");
                starts.push((id.clone(), call["function"]["name"].clone()));
            }
            arguments += call["function"]["arguments"].as_str().unwrap();
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish.push(reason.to_string());
        }
    }
    assert_eq!(reasoning, "Checking.");
    assert_eq!(content, "Let me look.");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].1, "get_weather");
    let arguments: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(arguments, json!({"city": "Paris", "days": 3}));
    assert_eq!(finish, vec!["tool_calls"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3);
    assert!(usage["completion_tokens"].as_u64().unwrap() > 10);
    // include_usage: every other chunk says `"usage": null` (OpenAI's stream shape).
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(chunk.get("usage"), Some(&Value::Null), "{chunk}");
    }
}

/// Two calls in one answer, then trailing text.
const TWO_CALLS: &str = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n\
    </parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n\
    <parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>";

#[tokio::test]
async fn parallel_tool_calls_false_ends_the_choice_at_its_first_call() {
    let tokens = |text: &str| byte_level_tokenizer().encode(text, false).unwrap().len();
    // The first call is complete at its `</function>`, ends at its `</tool_call>`.
    let upto = |end: &str| tokens(&TWO_CALLS[..TWO_CALLS.find(end).unwrap() + end.len()]);
    let (call_complete, call_end) = (upto("</function>"), upto("</tool_call>"));
    for (parallel, stream) in [(None, false), (Some(false), false), (Some(false), true)] {
        let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), TWO_CALLS));
        let app = app(Arc::clone(&generator), ServerConfig::default());
        let mut body = chat_body(stream);
        body["chat_template_kwargs"] = json!({"enable_thinking": false});
        if let Some(parallel) = parallel {
            body["parallel_tool_calls"] = json!(parallel);
        }
        let (status, text) = send(&app, post("/v1/chat/completions", body)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (cities, finish, usage) = if stream {
            let chunks = sse_payloads(&text);
            let mut arguments = String::new();
            let mut finish = Vec::new();
            for choice in chunks.iter().filter_map(|c| c["choices"].get(0)) {
                for call in choice["delta"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(call["index"], 0, "a second call was streamed: {call}");
                    arguments += call["function"]["arguments"].as_str().unwrap();
                }
                finish.extend(choice["finish_reason"].as_str().map(str::to_string));
            }
            let args: Value = serde_json::from_str(&arguments).unwrap();
            let usage = chunks.last().unwrap()["usage"].clone();
            (vec![args["city"].clone()], finish, usage)
        } else {
            let body: Value = serde_json::from_str(&text).unwrap();
            let choice = &body["choices"][0];
            let calls = choice["message"]["tool_calls"].as_array().unwrap().clone();
            let cities = calls
                .iter()
                .map(|c| {
                    let args = c["function"]["arguments"].as_str().unwrap();
                    serde_json::from_str::<Value>(args).unwrap()["city"].clone()
                })
                .collect();
            let finish = vec![choice["finish_reason"].as_str().unwrap().to_string()];
            (cities, finish, body["usage"].clone())
        };
        assert_eq!(finish, vec!["tool_calls"]);
        let completion = usage["completion_tokens"].as_u64().unwrap() as usize;
        if parallel == Some(false) {
            assert_eq!(cities, vec![json!("Paris")]);
            // Generation was stopped where the first call closed, before the second began.
            assert!(
                (call_complete..=call_end).contains(&completion),
                "{completion}"
            );
            assert_eq!(generator.aborted.lock().unwrap().len(), 1);
        } else {
            assert_eq!(cities, vec![json!("Paris"), json!("Rome")]);
            assert_eq!(completion, tokens(TWO_CALLS));
        }
    }
}

#[tokio::test]
async fn full_admission_is_429_and_a_dropped_stream_aborts() {
    let mut scripted = Scripted::new(&byte_level_tokenizer(), "hello");
    scripted.hang = true;
    let generator = Arc::new(scripted);
    let config = ServerConfig {
        max_pending: 2,
        ..ServerConfig::default()
    };
    let app = app(Arc::clone(&generator), config);
    let body = json!({"prompt": "hi", "stream": true, "n": 2, "max_tokens": 4});
    let held = app
        .clone()
        .oneshot(post("/v1/completions", body.clone()))
        .await
        .unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let (status, text) = send(&app, post("/v1/completions", body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "server_overloaded");
    let response = app
        .clone()
        .oneshot(post("/v1/completions", json!({"prompt": "hi"})))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(generator.aborted.lock().unwrap().is_empty());
    // The client goes away: dropping the body drops the guard, which aborts both choices.
    drop(held);
    assert_eq!(generator.aborted.lock().unwrap().len(), 2);
    // The permits came back (the response head is enough: the scripted engine never ends).
    let again = post(
        "/v1/completions",
        json!({"prompt": "hi", "stream": true, "n": 2}),
    );
    let response = app.clone().oneshot(again).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn stopped_engine_is_503_and_failure_is_500() {
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), "hello"));
    generator.healthy.store(false, Ordering::Relaxed);
    let app = app(Arc::clone(&generator), ServerConfig::default());
    let (status, body) = send(&app, post("/v1/completions", json!({"prompt": "hi"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let health = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&app, health).await.0, StatusCode::SERVICE_UNAVAILABLE);

    let mut failing = Scripted::new(&byte_level_tokenizer(), "hello");
    failing.fail = Some("executor: launch() raised boom".into());
    let app = self::app(Arc::new(failing), ServerConfig::default());
    let (status, body) = send(&app, post("/v1/completions", json!({"prompt": "hi"}))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "engine_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("boom"));
}
