//! Encodes texts with the server's tokenizer (used by the Python tokenizer parity test).
//!
//! Usage: `encode_text TOKENIZER_JSON < texts.json`: the input is a JSON array of strings; prints
//! a JSON array of `{"ids": [...], "decoded": "...", "streamed": "..."}`: the one-shot decode and
//! the concatenated incremental decode, both with special tokens kept.

use serde_json::json;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use tokenspeed_server::detokenize::IncrementalDecoder;
use tokenspeed_server::tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: encode_text TOKENIZER_JSON < texts.json")?;
    let tokenizer = Arc::new(Tokenizer::from_file(Path::new(&path))?);
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let texts: Vec<String> = serde_json::from_str(&input)?;
    let mut results = Vec::with_capacity(texts.len());
    for text in &texts {
        let ids = tokenizer.encode(text, false)?;
        let decoded = tokenizer.decode(&ids, false)?;
        let mut stream = IncrementalDecoder::new(tokenizer.clone(), false);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.step(id)?);
        }
        streamed.push_str(&stream.finish()?);
        results.push(json!({ "ids": ids, "decoded": decoded, "streamed": streamed }));
    }
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}
