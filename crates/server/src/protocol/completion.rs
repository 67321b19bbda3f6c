//! `POST /v1/completions` request and response types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{SamplingFields, Usage};

/// `prompt`: text, token ids, or a batch of either.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptField {
    /// One text prompt.
    Text(String),
    /// Several text prompts.
    Texts(Vec<String>),
    /// One prompt as token ids (integral floats accepted, like every integer field).
    Tokens(#[serde(deserialize_with = "super::lenient::int_vec")] Vec<u32>),
    /// Several prompts as token ids.
    TokenBatches(#[serde(deserialize_with = "super::lenient::int_vecs")] Vec<Vec<u32>>),
}

/// A text completion request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// The served model's name; may be omitted.
    pub model: Option<String>,
    /// The prompt(s).
    pub prompt: PromptField,
    /// Most tokens to generate (default 16, as in OpenAI's API).
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub max_tokens: Option<i64>,
    /// Return the logprobs of each token and of the `logprobs` most likely ones (0..=20).
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub logprobs: Option<u32>,
    /// Echo the prompt before the completion (not supported: must be false).
    #[serde(default)]
    pub echo: bool,
    /// Sampling and streaming fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// Logprobs of a text choice (legacy completions format).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Logprob of each token.
    pub token_logprobs: Vec<f32>,
    /// Per position, the most likely tokens and their logprobs.
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    /// Character offset of each token in the choice's text.
    pub text_offset: Vec<usize>,
}

/// One text choice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletionChoice {
    /// Position among the choices (`prompt_index * n + j`).
    pub index: usize,
    /// Generated text (or the next piece of it, when streaming).
    pub text: String,
    /// Logprobs, when asked for.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop`, `length` or `abort`; null until the choice ends.
    pub finish_reason: Option<String>,
}

/// A text completion, whole or one streamed chunk of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletionResponse {
    /// Response id (`cmpl-...`).
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix time of creation.
    pub created: u64,
    /// The served model's name.
    pub model: String,
    /// The choices.
    pub choices: Vec<CompletionChoice>,
    /// Token counts: in whole responses; in streams with `include_usage`, `null` in every
    /// chunk but the last, which carries them (as OpenAI streams it), absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}
