//! `tool_choice` `"required"` and named (the call is opened in the prompt and the parsers see
//! that opening as the start of the answer), their validation, `reasoning_tokens`, and
//! `min_tokens` checked against the real output budget.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::tests::{app, post, send, sse_payloads, tools, Scripted};
use crate::state::ServerConfig;
use crate::test_support::byte_level_tokenizer;

fn request(tool_choice: Value, stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "weather?"}], "tools": tools(),
           "tool_choice": tool_choice, "stream": stream})
}

/// The prompt the engine received, as text.
fn prompt_text(generator: &Scripted) -> String {
    let prompts = generator.prompts.lock().unwrap();
    byte_level_tokenizer().decode(&prompts[0], false).unwrap()
}

#[tokio::test]
async fn named_tool_choice_opens_the_call_and_skips_reasoning() {
    let script = "<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>";
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), script));
    let app = app(Arc::clone(&generator), ServerConfig::default());
    let choice = json!({"type": "function", "function": {"name": "get_weather"}});
    let (status, body) = send(&app, post("/v1/chat/completions", request(choice, false))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Thinking was on (the template opened <think>): the forced call closes it first.
    let prompt = prompt_text(&generator);
    assert!(
        prompt.ends_with("<think>\n\n</think>\n\n<tool_call>\n<function=get_weather>\n"),
        "{prompt:?}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert!(message["content"].is_null(), "{message}");
    assert!(message.get("reasoning_content").is_none(), "{message}");
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
}

#[tokio::test]
async fn required_tool_choice_streams_the_call_the_model_names() {
    let script = "get_weather>\n<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>";
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), script));
    let app = app(Arc::clone(&generator), ServerConfig::default());
    let (status, body) = send(
        &app,
        post("/v1/chat/completions", request(json!("required"), true)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(prompt_text(&generator).ends_with("<tool_call>\n<function="));
    let (mut names, mut arguments, mut content) = (Vec::new(), String::new(), String::new());
    let mut finish = Vec::new();
    for chunk in sse_payloads(&body) {
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        content += choice["delta"]["content"].as_str().unwrap_or("");
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(name) = call["function"].get("name") {
                names.push(name.clone());
            }
            arguments += call["function"]["arguments"].as_str().unwrap_or("");
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish.push(reason.to_string());
        }
    }
    assert_eq!(names, vec![json!("get_weather")]);
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Rome"})
    );
    assert_eq!(content, "");
    assert_eq!(finish, vec!["tool_calls"]);
}

#[tokio::test]
async fn bad_tool_choices_are_400() {
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), "x"));
    let app = app(Arc::clone(&generator), ServerConfig::default());
    let unknown = json!({"type": "function", "function": {"name": "no_such_tool"}});
    let no_tools = json!({"messages": [{"role": "user", "content": "hi"}],
                          "tool_choice": "required"});
    let no_parser = ServerConfig {
        tool_parser: None,
        ..ServerConfig::default()
    };
    let plain = self::app(Arc::clone(&generator), no_parser);
    for (app, body) in [
        (&app, request(unknown, false)),
        (&app, request(json!("sometimes"), false)),
        (&app, request(json!({"function": {}}), false)),
        (&app, no_tools),
        (&plain, request(json!("required"), false)),
    ] {
        let (status, text) = send(app, post("/v1/chat/completions", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["param"], "tool_choice", "{text}");
    }
    assert!(generator.prompts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn reasoning_tokens_count_the_thinking_part() {
    let tokenizer = byte_level_tokenizer();
    let (thinking, answer) = ("Let me think.</think>", "\n\nIt is sunny.");
    let generator = Arc::new(Scripted::new(&tokenizer, &format!("{thinking}{answer}")));
    let app = app(generator, ServerConfig::default());
    let body = json!({"messages": [{"role": "user", "content": "weather?"}]});
    let (status, text) = send(&app, post("/v1/chat/completions", body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let expected = tokenizer.encode(thinking, false).unwrap().len();
    let usage = &body["usage"];
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"],
        expected
    );
    assert!(usage["completion_tokens"].as_u64().unwrap() > expected as u64);
    assert_eq!(body["choices"][0]["message"]["content"], "It is sunny.");
}

#[tokio::test]
async fn min_tokens_beyond_the_budget_is_400() {
    let generator = Arc::new(Scripted::new(&byte_level_tokenizer(), "x"));
    let config = ServerConfig {
        max_model_len: 64,
        ..ServerConfig::default()
    };
    let app = app(generator, config);
    // No max_tokens: the budget is what max_model_len leaves after the prompt.
    let body = json!({"prompt": "hello", "min_tokens": 63});
    let (status, text) = send(&app, post("/v1/completions", body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("min_tokens"), "{text}");
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "min_tokens": 60});
    let (status, text) = send(&app, post("/v1/chat/completions", body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
}
