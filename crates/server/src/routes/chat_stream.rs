//! The SSE form of a chat completion: a role chunk per choice, then content / reasoning /
//! tool-call deltas as tokens arrive, a finish chunk per choice, the usage chunk when asked,
//! and `[DONE]`. The stream owns the [`Generation`]: if the client disconnects, the stream
//! is dropped and its guard aborts the unfinished choices.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokenspeed_engine::RequestEvent;

use super::chat::{choice_output, PreparedChat};
use super::common::{chat_logprob, finish_reason, response_id, unix_now};
use crate::choice_output::{ChoiceOutput, Piece};
use crate::error::ApiError;
use crate::generation::Generation;
use crate::protocol::{
    ChatChunkChoice, ChatCompletionChunk, ChatDelta, ChatLogprobs, FunctionCallDelta, TokenLogprob,
    ToolCallDelta, Usage,
};
use crate::state::AppState;
use crate::tool_parser::ToolCallEvent;

struct ChatStream {
    state: AppState,
    generation: Generation,
    outputs: Vec<ChoiceOutput>,
    /// Logprobs of tokens not yet sent (their text may still be held back).
    pending_logprobs: Vec<Vec<TokenLogprob>>,
    logprobs: bool,
    include_usage: bool,
    prompt_len: usize,
    usage: Usage,
    id: String,
    created: u64,
    queue: VecDeque<Event>,
    closed: bool,
}

/// The SSE response.
pub fn respond(
    state: AppState,
    prepared: PreparedChat,
    generation: Generation,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let outputs = (0..generation.len())
        .map(|i| choice_output(&state, &prepared, i))
        .collect();
    let mut stream = ChatStream {
        id: response_id("chatcmpl", &state),
        created: unix_now(),
        pending_logprobs: vec![Vec::new(); generation.len()],
        outputs,
        logprobs: prepared.logprobs.is_some(),
        include_usage: prepared.include_usage,
        prompt_len: prepared.prompt.len(),
        usage: Usage::default(),
        state,
        generation,
        queue: VecDeque::new(),
        closed: false,
    };
    for index in 0..stream.outputs.len() {
        let delta = ChatDelta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..ChatDelta::default()
        };
        stream.push_chunk(index, delta, None);
        if let Some(opening) = &prepared.forced_opening {
            let piece = stream.outputs[index].prime(opening);
            if !piece.is_empty() {
                stream.push_piece(index, piece, None);
            }
        }
    }
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next_event().await?;
        Some((Ok(event), stream))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn json_event(value: &impl Serialize) -> Event {
    Event::default().data(serde_json::to_string(value).unwrap_or_else(|e| {
        format!("{{\"error\": {{\"message\": \"cannot serialize a chunk: {e}\"}}}}")
    }))
}

impl ChatStream {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.closed {
                return None;
            }
            match self.generation.next().await {
                Some((index, event)) => {
                    if let Err(error) = self.handle(index, event) {
                        self.fail(error);
                    }
                }
                None => self.close(),
            }
        }
    }

    fn handle(&mut self, index: usize, event: RequestEvent) -> Result<(), ApiError> {
        let Some(output) = self.outputs.get_mut(index) else {
            return Ok(());
        };
        match event {
            RequestEvent::Token(token) => {
                if output.stopped() {
                    return Ok(());
                }
                let piece = output.push(token.token)?;
                let stopped = output.stopped();
                if self.logprobs {
                    let entry = chat_logprob(&self.state.tokenizer, &token);
                    self.pending_logprobs[index].push(entry);
                }
                if !piece.is_empty() {
                    self.push_piece(index, piece, None);
                }
                if stopped {
                    self.generation.stop_choice(index);
                }
            }
            RequestEvent::Finished {
                reason,
                num_cached_tokens,
            } => {
                let piece = output.finish()?;
                let mut finish = finish_reason(reason, output.stopped())?;
                if output.made_tool_call && finish == "stop" {
                    finish = "tool_calls".into();
                }
                let completion = output.completion_tokens;
                self.usage.add_reasoning(output.reasoning_tokens);
                let (prompt, cached) = if index == 0 {
                    (self.prompt_len, num_cached_tokens)
                } else {
                    (0, 0)
                };
                self.usage.add(prompt, completion, cached);
                self.push_piece(index, piece, Some(finish));
            }
            RequestEvent::Failed(message) => return Err(ApiError::Engine(message)),
        }
        Ok(())
    }

    /// Turns a piece into chunks: reasoning and content first, then tool-call deltas.
    fn push_piece(&mut self, index: usize, piece: Piece, finish: Option<String>) {
        let delta = ChatDelta {
            content: (!piece.content.is_empty()).then_some(piece.content),
            reasoning_content: (!piece.reasoning.is_empty()).then(|| piece.reasoning.clone()),
            reasoning: (!piece.reasoning.is_empty()).then_some(piece.reasoning),
            tool_calls: tool_call_deltas(piece.calls),
            ..ChatDelta::default()
        };
        self.push_chunk(index, delta, finish);
    }

    fn push_chunk(&mut self, index: usize, delta: ChatDelta, finish: Option<String>) {
        let logprobs = self.pending_logprobs.get_mut(index).and_then(|pending| {
            (!pending.is_empty()).then(|| ChatLogprobs {
                content: std::mem::take(pending),
            })
        });
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.state.config.served_model_name.clone(),
            choices: vec![ChatChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: self.include_usage.then_some(None),
        };
        self.queue.push_back(json_event(&chunk));
    }

    /// Every choice ended: usage (if asked) and `[DONE]`.
    fn close(&mut self) {
        if self.include_usage {
            let chunk = ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.created,
                model: self.state.config.served_model_name.clone(),
                choices: Vec::new(),
                usage: Some(Some(std::mem::take(&mut self.usage))),
            };
            self.queue.push_back(json_event(&chunk));
        }
        self.queue.push_back(Event::default().data("[DONE]"));
        self.closed = true;
    }

    /// An error mid-stream: an OpenAI error event, then the end (the guard aborts the rest).
    fn fail(&mut self, error: ApiError) {
        tracing::error!(%error, "stream failed");
        self.queue.push_back(json_event(&error.body()));
        self.queue.push_back(Event::default().data("[DONE]"));
        self.closed = true;
    }
}

/// OpenAI tool-call deltas: id, type and name first (empty arguments), then fragments.
fn tool_call_deltas(events: Vec<ToolCallEvent>) -> Vec<ToolCallDelta> {
    events
        .into_iter()
        .filter_map(|event| match event {
            ToolCallEvent::Start { index, id, name } => Some(ToolCallDelta {
                index,
                id: Some(id),
                r#type: Some("function".into()),
                function: FunctionCallDelta {
                    name: Some(name),
                    arguments: String::new(),
                },
            }),
            ToolCallEvent::Arguments { index, fragment } => Some(ToolCallDelta {
                index,
                id: None,
                r#type: None,
                function: FunctionCallDelta {
                    name: None,
                    arguments: fragment,
                },
            }),
            ToolCallEvent::End { .. } | ToolCallEvent::Content(_) => None,
        })
        .collect()
}
