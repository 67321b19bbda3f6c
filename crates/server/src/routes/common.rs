//! Helpers shared by the completion routes.

use std::time::{SystemTime, UNIX_EPOCH};

use tokenspeed_engine::TokenEvent;
use tokenspeed_scheduler::{FinishReason, RequestError};

use crate::error::ApiError;
use crate::protocol::{TokenLogprob, TopLogprob};
use crate::state::AppState;
use crate::tokenizer::Tokenizer;

/// 404 unless `model` is absent or names the served model.
pub fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(name) if name != state.config.served_model_name => Err(ApiError::ModelNotFound {
            requested: name.to_string(),
            served: state.config.served_model_name.clone(),
        }),
        _ => Ok(()),
    }
}

/// Unix time now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response id: `prefix` + the first engine request id, in hex.
pub fn response_id(prefix: &str, state: &AppState) -> String {
    format!("{prefix}-{:016x}", state.next_request_id())
}

/// The OpenAI `finish_reason` of an engine finish. `stopped_by_string`: the server ended the
/// choice (its abort then means `stop`).
pub fn finish_reason(reason: FinishReason, stopped_by_string: bool) -> Result<String, ApiError> {
    Ok(match reason {
        FinishReason::Stop { .. } => "stop",
        FinishReason::Length => "length",
        FinishReason::Abort if stopped_by_string => "stop",
        FinishReason::Abort => "abort",
        FinishReason::Error(RequestError::OutOfMemory {
            context_tokens,
            pool_pages,
        }) => {
            return Err(ApiError::Engine(format!(
                "out of memory: a context of {context_tokens} tokens does not fit in \
                 {pool_pages} KV pages"
            )))
        }
        FinishReason::Error(e) => return Err(ApiError::Engine(format!("{e:?}"))),
    }
    .to_string())
}

/// The text of one token, as logprobs show it (special tokens included).
pub fn token_text(tokenizer: &Tokenizer, id: u32) -> String {
    tokenizer
        .decode(&[id], false)
        .unwrap_or_else(|_| format!("<token {id}>"))
}

/// The chat-format logprob entry of a generated token.
pub fn chat_logprob(tokenizer: &Tokenizer, event: &TokenEvent) -> TokenLogprob {
    let token = token_text(tokenizer, event.token);
    TokenLogprob {
        bytes: token.as_bytes().to_vec(),
        token,
        logprob: event.logprob.unwrap_or(f32::NAN),
        top_logprobs: event
            .top_logprobs
            .iter()
            .map(|&(id, logprob)| {
                let token = token_text(tokenizer, id);
                TopLogprob {
                    bytes: token.as_bytes().to_vec(),
                    token,
                    logprob,
                }
            })
            .collect(),
    }
}

/// Runs CPU-heavy work (template rendering, tokenization) off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Engine(format!("worker task failed: {e}")))?
}
