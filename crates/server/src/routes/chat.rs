//! `POST /v1/chat/completions`: validate, render the chat template, tokenize, generate, and
//! answer whole or as a stream (`chat_stream.rs`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokenspeed_engine::RequestEvent;

use super::chat_stream;
use super::common::{blocking, chat_logprob, check_model, finish_reason, response_id, unix_now};
use super::extract::ApiJson;
use crate::choice_output::{ChoiceOutput, Piece};
use crate::error::{ApiError, ErrorResponse};
use crate::generation::{ChoicePlan, Generation};
use crate::protocol::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatLogprobs, ChatMessage,
    FunctionCall, ToolCallOut, Usage,
};
use crate::reasoning::ReasoningParser;
use crate::state::AppState;
use crate::template::ChatInput;
use crate::tool_parser::{collect, ToolCallEvent};
use crate::validate::{self, ToolChoice, MAX_TOP_LOGPROBS};

/// A validated, tokenized chat request.
pub(super) struct PreparedChat {
    pub limits: validate::Limits,
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub logprobs: Option<u32>,
    /// The prompt opened `<think>` (thinking on).
    pub thinking: bool,
    pub tools: Option<Vec<serde_json::Value>>,
    /// A forced tool-call opening appended to the prompt (`tool_choice` required or named):
    /// the parsers see it as the start of the answer.
    pub forced_opening: Option<String>,
    /// `parallel_tool_calls: false`: each choice ends when its first call closes.
    pub single_tool_call: bool,
    pub stream: bool,
    pub include_usage: bool,
}

fn prepare_fields(
    state: &AppState,
    request: &ChatCompletionRequest,
) -> Result<(validate::Limits, Option<u32>, ToolChoice), ApiError> {
    check_model(state, request.model.as_deref())?;
    validate::conversation(&request.messages, request.tools.as_deref())?;
    let tool_choice =
        validate::tool_choice(request.tool_choice.as_ref(), request.tools.as_deref())?;
    if tool_choice.forces_call() && state.config.tool_parser.is_none() {
        return Err(ApiError::invalid(
            "tool_choice",
            "forcing a call needs a tool-call parser (the server runs with --tool-call-parser none)",
        ));
    }
    let limits = validate::limits(
        &request.sampling,
        request.max_completion_tokens.or(request.max_tokens),
        &state.config.default_sampling,
    )?;
    let logprobs = match (request.logprobs, request.top_logprobs) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs",
                "needs \"logprobs\": true",
            ))
        }
        (true, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("{k} is more than {MAX_TOP_LOGPROBS}"),
            ))
        }
        (true, k) => Some(k.unwrap_or(0)),
    };
    Ok((limits, logprobs, tool_choice))
}

/// The forced opening of `choice` in the server's dialect (`None` unless a call is forced).
fn forced_opening(state: &AppState, choice: &ToolChoice) -> Option<String> {
    let kind = state.config.tool_parser?;
    match choice {
        ToolChoice::Required => Some(kind.forced_call_opening(None)),
        ToolChoice::Named(name) => Some(kind.forced_call_opening(Some(name))),
        ToolChoice::Auto | ToolChoice::None => None,
    }
}

/// Validates, renders and tokenizes (rendering and tokenization off the async workers).
async fn prepare(
    state: &AppState,
    request: ChatCompletionRequest,
) -> Result<PreparedChat, ApiError> {
    let (limits, logprobs, tool_choice) = prepare_fields(state, &request)?;
    let forced = forced_opening(state, &tool_choice);
    let render_forced = forced.clone();
    let min_tokens = limits.min_tokens;
    let (template, tokenizer) = (Arc::clone(&state.template), Arc::clone(&state.tokenizer));
    let max_model_len = state.config.max_model_len;
    let requested = limits.max_tokens;
    let ChatCompletionRequest {
        messages,
        tools,
        chat_template_kwargs,
        parallel_tool_calls,
        sampling,
        ..
    } = request;
    let render_tools = tools.clone();
    let (prompt, thinking, max_tokens) = blocking(move || {
        let mut text = template
            .render(&ChatInput {
                messages: &messages,
                tools: render_tools.as_deref(),
                add_generation_prompt: true,
                kwargs: chat_template_kwargs.as_ref(),
            })
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut thinking = text.trim_end().ends_with("<think>");
        if let Some(opening) = render_forced {
            // A forced call skips reasoning: close an opened <think> the way the template
            // writes a thinking-off turn, then open the call.
            if thinking {
                text.push_str("\n</think>\n\n");
                thinking = false;
            }
            text.push_str(&opening);
        }
        let prompt = tokenizer
            .encode(&text, false)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let max_tokens =
            validate::max_new_tokens(prompt.len(), requested, min_tokens, max_model_len)?;
        Ok((prompt, thinking, max_tokens))
    })
    .await?;
    Ok(PreparedChat {
        limits,
        prompt,
        max_tokens,
        logprobs,
        thinking,
        tools: if tool_choice == ToolChoice::None {
            None
        } else {
            tools
        },
        forced_opening: forced,
        single_tool_call: parallel_tool_calls == Some(false),
        stream: sampling.stream,
        include_usage: sampling.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The text pipeline of one chat choice.
pub(super) fn choice_output(
    state: &AppState,
    prepared: &PreparedChat,
    index: usize,
) -> ChoiceOutput {
    let reasoning = state
        .config
        .reasoning
        .then(|| ReasoningParser::new(prepared.thinking));
    let tools = match (&prepared.tools, state.config.tool_parser) {
        (Some(tools), Some(kind)) if !tools.is_empty() => {
            Some(kind.parser(tools, &format!("call_{index}_")))
        }
        _ => None,
    };
    ChoiceOutput::new(
        Arc::clone(&state.tokenizer),
        prepared.limits.stop.clone(),
        reasoning,
        tools,
    )
    .with_single_tool_call(prepared.single_tool_call)
}

/// Creates a chat completion.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream` an SSE stream whose events' \
            `data` are `ChatCompletionChunk` JSON, then `[DONE]`",
            content((ChatCompletionResponse = "application/json"),
                (Object = "text/event-stream"))),
        (status = 400, description = "Invalid request", body = ErrorResponse),
        (status = 401, description = "Bad API key", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 429, description = "Overloaded", body = ErrorResponse),
        (status = 500, description = "Engine failure", body = ErrorResponse),
        (status = 503, description = "Engine not running or server shutting down",
            body = ErrorResponse),
    ))]
pub async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let prepared = prepare(&state, request).await?;
    let choices = (0..prepared.limits.n)
        .map(|_| ChoicePlan {
            prompt: prepared.prompt.clone(),
            max_tokens: prepared.max_tokens,
        })
        .collect();
    let generation =
        Generation::start(&state, choices, &prepared.limits, prepared.logprobs).await?;
    if prepared.stream {
        return Ok(chat_stream::respond(state, prepared, generation).into_response());
    }
    Ok(Json(complete(&state, &prepared, generation).await?).into_response())
}

/// Everything one choice produced.
#[derive(Default)]
struct Collected {
    reasoning: String,
    content: String,
    calls: Vec<ToolCallEvent>,
    logprobs: Vec<crate::protocol::TokenLogprob>,
    finish: Option<String>,
    cached: usize,
}

impl Collected {
    fn add(&mut self, piece: Piece) {
        self.reasoning.push_str(&piece.reasoning);
        self.content.push_str(&piece.content);
        self.calls.extend(piece.calls);
    }
}

async fn complete(
    state: &AppState,
    prepared: &PreparedChat,
    mut generation: Generation,
) -> Result<ChatCompletionResponse, ApiError> {
    let mut outputs: Vec<ChoiceOutput> = (0..generation.len())
        .map(|i| choice_output(state, prepared, i))
        .collect();
    let mut collected: Vec<Collected> = (0..generation.len())
        .map(|_| Collected::default())
        .collect();
    if let Some(opening) = &prepared.forced_opening {
        for (output, acc) in outputs.iter_mut().zip(&mut collected) {
            acc.add(output.prime(opening));
        }
    }
    while let Some((i, event)) = generation.next().await {
        let (Some(output), Some(acc)) = (outputs.get_mut(i), collected.get_mut(i)) else {
            continue;
        };
        match event {
            RequestEvent::Token(token) => {
                if output.stopped() {
                    continue;
                }
                if prepared.logprobs.is_some() {
                    acc.logprobs.push(chat_logprob(&state.tokenizer, &token));
                }
                acc.add(output.push(token.token)?);
                if output.stopped() {
                    generation.stop_choice(i);
                }
            }
            RequestEvent::Finished {
                reason,
                num_cached_tokens,
            } => {
                acc.add(output.finish()?);
                let mut finish = finish_reason(reason, output.stopped())?;
                if output.made_tool_call && finish == "stop" {
                    finish = "tool_calls".into();
                }
                acc.finish = Some(finish);
                acc.cached = num_cached_tokens;
            }
            RequestEvent::Failed(message) => return Err(ApiError::Engine(message)),
        }
    }
    let mut usage = Usage::default();
    let mut choices = Vec::with_capacity(collected.len());
    for (index, (acc, output)) in collected.into_iter().zip(&outputs).enumerate() {
        // The prompt is counted once: every choice shares it.
        let (prompt, cached) = if index == 0 {
            (prepared.prompt.len(), acc.cached)
        } else {
            (0, 0)
        };
        usage.add(prompt, output.completion_tokens, cached);
        usage.add_reasoning(output.reasoning_tokens);
        let calls = collect(&acc.calls).calls;
        let reasoning = (!acc.reasoning.is_empty()).then_some(acc.reasoning);
        choices.push(ChatChoice {
            index,
            message: ChatMessage {
                role: "assistant".into(),
                content: (!acc.content.is_empty() || calls.is_empty()).then_some(acc.content),
                reasoning_content: reasoning.clone(),
                reasoning,
                tool_calls: calls
                    .into_iter()
                    .map(|c| ToolCallOut {
                        id: c.id,
                        r#type: "function".into(),
                        function: FunctionCall {
                            name: c.name,
                            arguments: c.arguments,
                        },
                    })
                    .collect(),
            },
            logprobs: prepared.logprobs.map(|_| ChatLogprobs {
                content: acc.logprobs,
            }),
            finish_reason: acc.finish.unwrap_or_else(|| "abort".into()),
        });
    }
    Ok(ChatCompletionResponse {
        id: response_id("chatcmpl", state),
        object: "chat.completion".into(),
        created: unix_now(),
        model: state.config.served_model_name.clone(),
        choices,
        usage,
    })
}
