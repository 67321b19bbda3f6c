//! `POST /v1/chat/completions` request and response types.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use utoipa::ToSchema;

use super::chat_schema::{
    ChatMessageSchema, ChatTemplateKwargsSchema, ToolChoiceSchema, ToolSchema,
};
use super::common::{ChatLogprobs, SamplingFields, Usage};

/// A chat completion request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The served model's name (see `GET /v1/models`); may be omitted.
    pub model: Option<String>,
    /// The conversation (at least one message), rendered with the model's chat template. The
    /// template may reject an order the schema cannot express (400): the built-in Qwen3.5 one
    /// needs a user message, takes `system` only first and does not know `developer`.
    #[schema(value_type = Vec<ChatMessageSchema>, min_items = 1)]
    pub messages: Vec<Json>,
    /// Functions the model may call.
    #[schema(value_type = Option<Vec<ToolSchema>>)]
    pub tools: Option<Vec<Json>>,
    /// `"auto"` (default), `"none"`, `"required"` or `{"type": "function", "function": {"name"}}`:
    /// the last two force a call by opening it in the prompt (no reasoning then).
    #[schema(value_type = Option<ToolChoiceSchema>)]
    pub tool_choice: Option<Json>,
    /// `false`: at most one tool call; generation ends when it closes (default `true`).
    pub parallel_tool_calls: Option<bool>,
    /// Most tokens to generate (default: up to the context length).
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub max_tokens: Option<i64>,
    /// Same as `max_tokens` (the newer OpenAI name); wins when both are given.
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub max_completion_tokens: Option<i64>,
    /// Return the logprob of each generated token.
    #[serde(default)]
    pub logprobs: bool,
    /// With `logprobs`: also return the k most likely tokens per position (0..=20).
    #[serde(default, deserialize_with = "super::lenient::opt_int")]
    pub top_logprobs: Option<u32>,
    /// Extra chat-template variables, e.g. `{"enable_thinking": false}`.
    #[schema(value_type = Option<ChatTemplateKwargsSchema>)]
    pub chat_template_kwargs: Option<Map<String, Json>>,
    /// Sampling and streaming fields.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// A function call made by the model.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments as a JSON object text.
    pub arguments: String,
}

/// A tool call in a response message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolCallOut {
    /// Call id (`call_...`).
    pub id: String,
    /// Always `function`.
    pub r#type: String,
    /// The call.
    pub function: FunctionCall,
}

/// The assistant's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer text (null when the answer is only tool calls).
    pub content: Option<String>,
    /// The `<think>` part, when the model reasoned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Same as `reasoning_content` (the newer vLLM name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Calls the model made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

/// One chat choice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatChoice {
    /// Position among the choices.
    pub index: usize,
    /// The answer.
    pub message: ChatMessage,
    /// Logprobs, when asked for.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop`, `length`, `tool_calls` or `abort`.
    pub finish_reason: String,
}

/// A whole chat completion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletionResponse {
    /// Response id (`chatcmpl-...`).
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix time of creation.
    pub created: u64,
    /// The served model's name.
    pub model: String,
    /// The choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// A streamed piece of a function call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionCallDelta {
    /// The name (first delta of a call only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next fragment of the arguments JSON.
    pub arguments: String,
}

/// A streamed piece of a tool call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolCallDelta {
    /// Which call of this choice.
    pub index: usize,
    /// Call id (first delta of a call only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first delta of a call only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// The function part.
    pub function: FunctionCallDelta,
}

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ChatDelta {
    /// `assistant` in the first chunk of a choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Answer text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Reasoning text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Same as `reasoning_content`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Tool-call pieces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// One choice in a chunk.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatChunkChoice {
    /// Which choice.
    pub index: usize,
    /// What is new.
    pub delta: ChatDelta,
    /// Logprobs of the tokens in this chunk, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChatLogprobs>,
    /// Set in the choice's last chunk.
    pub finish_reason: Option<String>,
}

/// A streamed chat chunk (`data: {...}` of the SSE stream).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// Response id, the same in every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix time of creation.
    pub created: u64,
    /// The served model's name.
    pub model: String,
    /// Choices with something new.
    pub choices: Vec<ChatChunkChoice>,
    /// With `stream_options.include_usage`: `null` in every chunk but the last, which carries
    /// the request's usage (as OpenAI streams it); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}
