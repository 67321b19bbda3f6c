//! Times the prompt path of chat requests: template rendering and tokenization, per case.
//!
//! Usage: `prompt_timing MODEL_DIR < cases.json` (the `render_chat` input format); prints one
//! line per case: prompt tokens, render ms, encode ms.

use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::time::Instant;
use tokenspeed_server::template::{ChatInput, ChatTemplate};
use tokenspeed_server::tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: prompt_timing MODEL_DIR < cases.json")?;
    let template = ChatTemplate::resolve(Some(Path::new(&dir)), None)?;
    let tokenizer = Tokenizer::from_model_dir(Path::new(&dir))?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let cases: Vec<Value> = serde_json::from_str(&input)?;
    for case in &cases {
        let messages = case["messages"].as_array().ok_or("case without messages")?;
        let started = Instant::now();
        let text = template.render(&ChatInput {
            messages,
            tools: case
                .get("tools")
                .and_then(Value::as_array)
                .map(Vec::as_slice),
            add_generation_prompt: true,
            kwargs: None,
        })?;
        let rendered = started.elapsed();
        let started = Instant::now();
        let ids = tokenizer.encode(&text, false)?;
        let encoded = started.elapsed();
        println!(
            "tokens {} render_ms {:.2} encode_ms {:.2}",
            ids.len(),
            rendered.as_secs_f64() * 1e3,
            encoded.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
