//! `tokenspeed-server`: the OpenAI-compatible front end of TokenSpeed.
//!
//! The text-processing half is here (the HTTP routes come with the engine):
//! * [`tokenizer`]: a model's `tokenizer.json`;
//! * [`detokenize`]: streaming, UTF-8-safe detokenization;
//! * [`stop`]: stop strings that may span tokens;
//! * [`template`]: chat templates rendered like transformers does with jinja2;
//! * [`tool_parser`]: Qwen3.5 XML and Hermes JSON tool calls, streamed or whole;
//! * [`reasoning`]: the `<think>…</think>` split.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap: a panic is the report

pub mod detokenize;
pub mod reasoning;
pub mod stop;
pub mod template;
pub mod tokenizer;
pub mod tool_parser;

mod pyfmt;
mod template_env;
mod text_buffer;

#[cfg(test)]
mod test_support;

/// Message printed by the front ends until the HTTP server lands.
pub const NOT_BUILT_YET: &str =
    "tokenspeed-server: the HTTP server is not built yet (planned in the server issue)";
