//! `tokenspeed-server`: the OpenAI-compatible front end of TokenSpeed.
//!
//! HTTP (axum): [`routes::router`] builds the API over an [`AppState`]; [`ServerBuilder`]
//! assembles the state (another axum application can nest the router it returns, see
//! `examples/mount.rs`), [`serve`] runs it. Routes talk to the engine through the small
//! [`Generator`] trait; [`EngineGenerator`] implements it for the real engine.
//!
//! Text processing:
//! * [`tokenizer`]: a model's `tokenizer.json`;
//! * [`detokenize`]: streaming, UTF-8-safe detokenization;
//! * [`stop`]: stop strings that may span tokens;
//! * [`template`]: chat templates rendered like transformers does with jinja2;
//! * [`tool_parser`]: Qwen3.5 XML and Hermes JSON tool calls, streamed or whole;
//! * [`reasoning`]: the `<think>…</think>` split;
//! * [`choice_output`]: all of them chained for one choice.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap: a panic is the report

pub mod choice_output;
pub mod detokenize;
pub mod engine_backend;
pub mod error;
pub mod generation;
pub mod generator;
pub mod metrics;
pub mod openapi;
pub mod protocol;
pub mod reasoning;
pub mod routes;
pub mod serve;
pub mod state;
pub mod stop;
pub mod template;
pub mod tokenizer;
pub mod tokenizer_segments;
pub mod tool_parser;
pub mod unsupported;
pub mod validate;

mod pyfmt;
mod template_env;
mod text_buffer;

#[cfg(test)]
mod test_support;

pub use engine_backend::{EngineGenerator, MetaFactory};
pub use error::ApiError;
pub use generator::{EventSink, GenerateRequest, Generator};
pub use state::{AppState, ServerBuilder, ServerConfig};
