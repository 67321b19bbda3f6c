//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the
//! wire types' schemas.

use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorResponse};
use crate::protocol::*;
use crate::routes::{
    __path_chat_completions, __path_completions, __path_detokenize, __path_health,
    __path_list_models, __path_metrics, __path_retrieve_model, __path_tokenize, __path_version,
};

/// The API description served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "TokenSpeed OpenAI-compatible API",
        description = "Chat and text completions, \
        tokenization, health and metrics of a TokenSpeed server."
    ),
    paths(
        chat_completions,
        completions,
        list_models,
        retrieve_model,
        version,
        tokenize,
        detokenize,
        health,
        metrics
    ),
    components(schemas(
        ErrorResponse,
        ErrorBody,
        ChatCompletionRequest,
        ChatCompletionResponse,
        ChatCompletionChunk,
        CompletionRequest,
        CompletionResponse,
        Usage,
        ModelList,
        ModelCard,
        VersionResponse,
        TokenizeRequest,
        TokenizeResponse,
        DetokenizeRequest,
        DetokenizeResponse
    ))
)]
pub struct ApiDoc;

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
