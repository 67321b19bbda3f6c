//! `POST /tokenize` (a prompt, or messages rendered through the chat template) and
//! `POST /detokenize`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::common::{blocking, check_model};
use super::extract::ApiJson;
use crate::error::{ApiError, ErrorResponse};
use crate::protocol::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};
use crate::state::AppState;
use crate::template::ChatInput;
use crate::validate;

/// Tokenizes a prompt, or a conversation rendered with the chat template.
#[utoipa::path(post, path = "/tokenize", request_body = TokenizeRequest, responses(
    (status = 200, body = TokenizeResponse),
    (status = 400, description = "Invalid request", body = ErrorResponse),
    (status = 401, description = "Bad API key", body = ErrorResponse),
    (status = 404, description = "Unknown model", body = ErrorResponse),
    (status = 413, description = "Body too large", body = ErrorResponse),
    (status = 503, description = "Server shutting down", body = ErrorResponse)))]
pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    check_model(&state, request.model.as_deref())?;
    let (template, tokenizer) = (Arc::clone(&state.template), Arc::clone(&state.tokenizer));
    let max_model_len = state.config.max_model_len;
    blocking(move || {
        let prompt = match (request.prompt, request.messages) {
            (Some(prompt), None) => prompt,
            (None, Some(messages)) => {
                // The same checks as chat: /tokenize must not render what chat would refuse.
                validate::conversation(&messages, request.tools.as_deref())?;
                template
                    .render(&ChatInput {
                        messages: &messages,
                        tools: request.tools.as_deref(),
                        add_generation_prompt: request.add_generation_prompt.unwrap_or(true),
                        kwargs: request.chat_template_kwargs.as_ref(),
                    })
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of `prompt` and `messages`",
                ))
            }
        };
        let tokens = tokenizer
            .encode(&prompt, false)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Json(TokenizeResponse {
            count: tokens.len(),
            tokens,
            max_model_len,
            prompt,
        }))
    })
    .await
}

/// Decodes token ids (special tokens included).
#[utoipa::path(post, path = "/detokenize", request_body = DetokenizeRequest, responses(
    (status = 200, body = DetokenizeResponse),
    (status = 400, description = "Invalid token id", body = ErrorResponse),
    (status = 401, description = "Bad API key", body = ErrorResponse),
    (status = 404, description = "Unknown model", body = ErrorResponse),
    (status = 413, description = "Body too large", body = ErrorResponse),
    (status = 503, description = "Server shutting down", body = ErrorResponse)))]
pub async fn detokenize(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    check_model(&state, request.model.as_deref())?;
    let vocab = state.tokenizer.vocab_size();
    if let Some(bad) = request.tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::invalid(
            "tokens",
            format!("token id {bad} is outside the vocabulary of {vocab}"),
        ));
    }
    let prompt = state
        .tokenizer
        .decode(&request.tokens, false)
        .map_err(|e| ApiError::invalid("tokens", e.to_string()))?;
    Ok(Json(DetokenizeResponse { prompt }))
}
