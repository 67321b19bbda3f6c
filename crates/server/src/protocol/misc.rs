//! `/v1/models`, `/tokenize`, `/detokenize` and `/health` types.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use utoipa::ToSchema;

use super::chat_schema::{ChatMessageSchema, ChatTemplateKwargsSchema, ToolSchema};

/// A served model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelCard {
    /// The name clients pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix time the server started.
    pub created: u64,
    /// Always `tokenspeed`.
    pub owned_by: String,
    /// Most tokens (prompt + output) of one request.
    pub max_model_len: usize,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served models (one).
    pub data: Vec<ModelCard>,
}

/// `POST /tokenize`: either `prompt`, or `messages` (+ `tools`, `chat_template_kwargs`)
/// rendered through the chat template.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    /// The served model's name; may be omitted.
    pub model: Option<String>,
    /// Text to tokenize as is.
    pub prompt: Option<String>,
    /// A conversation (at least one message) to render with the chat template, then tokenize.
    #[schema(value_type = Option<Vec<ChatMessageSchema>>, min_items = 1)]
    pub messages: Option<Vec<Json>>,
    /// Tools passed to the template with `messages`.
    #[schema(value_type = Option<Vec<ToolSchema>>)]
    pub tools: Option<Vec<Json>>,
    /// Extra template variables.
    #[schema(value_type = Option<ChatTemplateKwargsSchema>)]
    pub chat_template_kwargs: Option<Map<String, Json>>,
    /// Open an assistant turn after `messages` (default true).
    pub add_generation_prompt: Option<bool>,
}

/// `POST /tokenize` result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenizeResponse {
    /// Number of tokens.
    pub count: usize,
    /// The token ids.
    pub tokens: Vec<u32>,
    /// The server's context limit.
    pub max_model_len: usize,
    /// The text that was tokenized (the rendered template for `messages`).
    pub prompt: String,
}

/// `POST /detokenize`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct DetokenizeRequest {
    /// The served model's name; may be omitted.
    pub model: Option<String>,
    /// Token ids to decode.
    #[serde(deserialize_with = "super::lenient::int_vec")]
    pub tokens: Vec<u32>,
}

/// `POST /detokenize` result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DetokenizeResponse {
    /// The decoded text (special tokens included).
    pub prompt: String,
}

/// `GET /health` result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
}

/// `GET /version` result (vLLM's shape).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionResponse {
    /// The server's version.
    pub version: String,
}
