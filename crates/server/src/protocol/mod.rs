//! Wire types of the OpenAI-compatible API (serde + OpenAPI schemas). Field docs are the
//! descriptions `/openapi.json` shows.

pub mod chat;
pub mod chat_schema;
pub mod common;
pub mod completion;
pub mod lenient;
pub mod misc;

pub use chat::*;
pub use common::*;
pub use completion::*;
pub use misc::*;
