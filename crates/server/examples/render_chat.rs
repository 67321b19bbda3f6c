//! Renders chat conversations with the server's template renderer (used by the Python parity
//! test against transformers/jinja2).
//!
//! Usage: `render_chat [--model-dir DIR] [--chat-template FILE] < cases.json`, where the input
//! is a JSON array of `{"messages": [...], "tools": [...]?, "add_generation_prompt": bool,
//! "chat_template_kwargs": {...}?}`; prints a JSON array of `{"text": ...}` or `{"error": ...}`.

use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use tokenspeed_server::template::{ChatInput, ChatTemplate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut model_dir = None;
    let mut override_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .map(PathBuf::from)
            .ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--model-dir" => model_dir = Some(value),
            "--chat-template" => override_file = Some(value),
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    let template = ChatTemplate::resolve(model_dir.as_deref(), override_file.as_deref())?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let cases: Vec<Value> = serde_json::from_str(&input)?;
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let messages = case["messages"].as_array().ok_or("case without messages")?;
        let rendered = template.render(&ChatInput {
            messages,
            tools: case
                .get("tools")
                .and_then(Value::as_array)
                .map(Vec::as_slice),
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
            kwargs: case.get("chat_template_kwargs").and_then(Value::as_object),
        });
        results.push(match rendered {
            Ok(text) => json!({ "text": text }),
            Err(e) => json!({ "error": e.to_string() }),
        });
    }
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}
