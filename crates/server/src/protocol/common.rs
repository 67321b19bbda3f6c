//! Types shared by chat and text completions.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

/// `stop`: one string or a list of strings.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopField {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Streaming options.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with the whole request's `usage` (and no choices).
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields common to both completion routes (vLLM semantics). An omitted field takes
/// the server's default: the model's `generation_config.json` value where it has one
/// (`--generation-config auto`), else the default stated here.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct SamplingFields {
    /// Softmax temperature in [0, 2]; 0 is greedy. Default 1 (or the model's).
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1]. Default 1 (or the model's).
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens; 0 or -1 disables.
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub top_k: Option<i64>,
    /// Drop tokens with probability below `min_p` times the most likely one's; in [0, 1].
    pub min_p: Option<f32>,
    /// Penalty in [-2, 2] on tokens already generated.
    pub presence_penalty: Option<f32>,
    /// Penalty in [-2, 2] proportional to how often a token was generated.
    pub frequency_penalty: Option<f32>,
    /// Multiplicative penalty (> 0, 1 disables) on prompt and generated tokens.
    pub repetition_penalty: Option<f32>,
    /// Seed of the request's random stream: the same seed gives the same samples.
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub seed: Option<i64>,
    /// Up to 16 strings that end generation; they are not part of the output.
    pub stop: Option<StopField>,
    /// Extra token ids that end generation.
    #[serde(default, deserialize_with = "super::lenient::opt_int_vec")]
    pub stop_token_ids: Option<Vec<u32>>,
    /// Keep generating past the model's end-of-sequence tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    /// No stop token ends generation before this many tokens.
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub min_tokens: Option<u32>,
    /// Number of choices to generate for each prompt (1..=16).
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub n: Option<u32>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Token id (as a string) -> value in [-100, 100] added to its logit before sampling.
    #[schema(value_type = Option<std::collections::HashMap<String, f64>>)]
    pub logit_bias: Option<Json>,
    /// OpenAI / vLLM fields that would change the output and are not implemented: refused
    /// with a 400 naming the field rather than silently ignored.
    #[serde(flatten)]
    pub unsupported: UnsupportedFields,
}

/// Output-shaping fields TokenSpeed does not implement. Each is accepted only in its
/// neutral form (absent, null, empty, `{"type": "text"}`, `["text"]`); anything else is a
/// 400 naming the field, so a client never gets unconstrained output it did not ask for.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UnsupportedFields {
    /// Structured output: only `{"type": "text"}` (`json_object` / `json_schema`: 400).
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Json>,
    /// vLLM guided decoding: not supported (400 unless null).
    #[schema(value_type = Option<Object>)]
    pub guided_json: Option<Json>,
    /// vLLM guided decoding: not supported (400 unless null).
    #[schema(value_type = Option<String>)]
    pub guided_regex: Option<Json>,
    /// vLLM guided decoding: not supported (400 unless null).
    #[schema(value_type = Option<Vec<String>>)]
    pub guided_choice: Option<Json>,
    /// vLLM guided decoding: not supported (400 unless null).
    #[schema(value_type = Option<String>)]
    pub guided_grammar: Option<Json>,
    /// vLLM structured outputs: not supported (400 unless null).
    #[schema(value_type = Option<Object>)]
    pub structured_outputs: Option<Json>,
    /// Text after the completion: only empty.
    #[schema(value_type = Option<String>)]
    pub suffix: Option<Json>,
    /// Server-side best-of sampling: only absent, null or equal to `n`.
    #[schema(value_type = Option<u32>)]
    pub best_of: Option<Json>,
    /// Output modalities: only `["text"]`.
    #[schema(value_type = Option<Vec<String>>)]
    pub modalities: Option<Json>,
    /// Audio output: not supported (400 unless null).
    #[schema(value_type = Option<Object>)]
    pub audio: Option<Json>,
    /// Predicted output: not supported (400 unless null).
    #[schema(value_type = Option<Object>)]
    pub prediction: Option<Json>,
}

/// Prompt token details.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache (always present).
    pub cached_tokens: usize,
}

/// Token counts of a request.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Usage {
    /// Prompt tokens (counted once per prompt, for each choice that ran it).
    pub prompt_tokens: usize,
    /// Generated tokens over all choices.
    pub completion_tokens: usize,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: usize,
    /// Prefix-cache details.
    pub prompt_tokens_details: PromptTokensDetails,
    /// Reasoning-token count (chat completions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// Completion token details.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CompletionTokensDetails {
    /// Generated tokens that were reasoning (inside `<think>…</think>`).
    pub reasoning_tokens: usize,
}

impl Usage {
    /// Adds one choice's counts.
    pub fn add(&mut self, prompt: usize, completion: usize, cached: usize) {
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.total_tokens += prompt + completion;
        self.prompt_tokens_details.cached_tokens += cached;
    }

    /// Adds one chat choice's reasoning tokens (creating the details).
    pub fn add_reasoning(&mut self, reasoning_tokens: usize) {
        self.completion_tokens_details
            .get_or_insert_with(CompletionTokensDetails::default)
            .reasoning_tokens += reasoning_tokens;
    }
}

/// One alternative token and its logprob (chat format).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopLogprob {
    /// The token text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token text.
    pub bytes: Vec<u8>,
}

/// A generated token with its logprob and the most likely alternatives (chat format).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenLogprob {
    /// The token text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token text.
    pub bytes: Vec<u8>,
    /// The `top_logprobs` most likely tokens at this position.
    pub top_logprobs: Vec<TopLogprob>,
}

/// Logprobs of a chat choice.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<TokenLogprob>,
}
