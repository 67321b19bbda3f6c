//! A small byte-level BPE tokenizer (built in memory) for unit tests: every byte is a token,
//! plus tokens that cut UTF-8 characters in the middle, plus added tokens like Qwen's.

use crate::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

/// GPT-2's byte -> printable character map.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(byte) {
        return char::from(byte);
    }
    let shift = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + shift).unwrap()
}

fn to_vocab_str(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_char(b)).collect()
}

/// Added tokens of the test tokenizer: (content, special).
pub const ADDED: [(&str, bool); 6] = [
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<think>", false),
    ("</think>", false),
    ("<tool_call>", false),
    ("</tool_call>", false),
];

/// Multi-byte tokens, each the merge of its prefix and its last byte (so prefixes come first).
const MERGED: [&[u8]; 10] = [
    b"he",
    b"hel",
    b"hell",
    b"hello",
    b" w",
    &[0xE4, 0xBD],       // first two bytes of U+4F60
    &[0xE4, 0xBD, 0xA0], // U+4F60 whole
    &[0xF0, 0x9F],       // start of an emoji
    &[0xF0, 0x9F, 0xA4],
    &[0xA4, 0xB7], // the middle of an emoji: only reachable by decoding ids directly
];

/// Builds the test tokenizer.
pub fn byte_level_tokenizer() -> Tokenizer {
    byte_level_tokenizer_with(Value::Null, false, false)
}

/// The test tokenizer with this `normalizer` JSON, and its added tokens `normalized` and
/// `lstrip` as given.
pub fn byte_level_tokenizer_with(normalizer: Value, normalized: bool, lstrip: bool) -> Tokenizer {
    let mut vocab = Map::new();
    for byte in 0..=255u8 {
        vocab.insert(to_vocab_str(&[byte]), json!(byte));
    }
    let mut merges = Vec::new();
    for (i, token) in MERGED.iter().enumerate() {
        let (prefix, last) = token.split_at(token.len() - 1);
        merges.push(json!([to_vocab_str(prefix), to_vocab_str(last)]));
        vocab.insert(to_vocab_str(token), json!(256 + i));
    }
    let first_added = 256 + MERGED.len();
    let added: Vec<Value> = ADDED
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            json!({"id": first_added + i, "content": content, "single_word": false,
                   "lstrip": lstrip, "rstrip": false, "normalized": normalized,
                   "special": special})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": true});
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": normalizer,
        "pre_tokenizer": byte_level, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    Tokenizer::from_json(&doc.to_string()).unwrap()
}

/// Number of ids in the test tokenizer.
pub fn vocab_len() -> u32 {
    (256 + MERGED.len() + ADDED.len()) as u32
}
