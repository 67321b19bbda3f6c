//! `POST /v1/completions`: text (or token-id) prompts, `n` choices each, whole or streamed.
//! Choice `prompt_index * n + j` is the j-th sample of prompt `prompt_index`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokenspeed_engine::{RequestEvent, TokenEvent};

use super::common::{blocking, check_model, finish_reason, response_id, token_text, unix_now};
use super::extract::ApiJson;
use crate::choice_output::ChoiceOutput;
use crate::error::{ApiError, ErrorResponse};
use crate::generation::{ChoicePlan, Generation};
use crate::protocol::{
    CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, PromptField, Usage,
};
use crate::state::AppState;
use crate::validate::{self, MAX_TOP_LOGPROBS};

/// Per-choice state.
struct TextChoice {
    output: ChoiceOutput,
    text_len: usize,
    logprobs: Option<CompletionLogprobs>,
    finish: Option<String>,
}

/// The shared per-request state of both forms.
struct TextCompletion {
    state: AppState,
    generation: Generation,
    choices: Vec<TextChoice>,
    n: usize,
    usage: Usage,
    id: String,
    created: u64,
}

/// Creates a text completion.
#[utoipa::path(post, path = "/v1/completions", request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream` an SSE stream whose events' \
            `data` are `CompletionResponse`-shaped JSON chunks, then `[DONE]`",
            content((CompletionResponse = "application/json"),
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
pub async fn completions(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    check_model(&state, request.model.as_deref())?;
    if request.echo {
        return Err(ApiError::invalid("echo", "echo=true is not supported"));
    }
    if request.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
        return Err(ApiError::invalid(
            "logprobs",
            format!("at most {MAX_TOP_LOGPROBS}"),
        ));
    }
    let max_tokens = Some(request.max_tokens.unwrap_or(16));
    let limits = validate::limits(
        &request.sampling,
        max_tokens,
        &state.config.default_sampling,
    )?;
    let tokenizer = Arc::clone(&state.tokenizer);
    let max_model_len = state.config.max_model_len;
    let requested = limits.max_tokens;
    let min_tokens = limits.min_tokens;
    let prompt = request.prompt;
    let prompts = blocking(move || {
        let prompts = match prompt {
            PromptField::Text(text) => vec![encode(&tokenizer, &text)?],
            PromptField::Texts(texts) => texts
                .iter()
                .map(|t| encode(&tokenizer, t))
                .collect::<Result<_, _>>()?,
            PromptField::Tokens(ids) => vec![ids],
            PromptField::TokenBatches(batches) => batches,
        };
        if prompts.is_empty() {
            return Err(ApiError::invalid("prompt", "holds no prompt"));
        }
        let vocab = tokenizer.vocab_size();
        prompts
            .into_iter()
            .map(|ids| {
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(ApiError::invalid(
                        "prompt",
                        format!("token id {bad} is outside the vocabulary of {vocab}"),
                    ));
                }
                let max_tokens =
                    validate::max_new_tokens(ids.len(), requested, min_tokens, max_model_len)?;
                Ok(ChoicePlan {
                    prompt: ids,
                    max_tokens,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let n = limits.n;
    let plans: Vec<ChoicePlan> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n))
        .collect();
    let generation = Generation::start(&state, plans, &limits, request.logprobs).await?;
    let choices = (0..generation.len())
        .map(|_| TextChoice {
            output: ChoiceOutput::new(
                Arc::clone(&state.tokenizer),
                limits.stop.clone(),
                None,
                None,
            ),
            text_len: 0,
            logprobs: request.logprobs.map(|_| CompletionLogprobs::default()),
            finish: None,
        })
        .collect();
    let completion = TextCompletion {
        id: response_id("cmpl", &state),
        created: unix_now(),
        state,
        generation,
        choices,
        n,
        usage: Usage::default(),
    };
    if request.sampling.stream {
        let include_usage = request
            .sampling
            .stream_options
            .is_some_and(|o| o.include_usage);
        return Ok(stream(completion, include_usage).into_response());
    }
    Ok(Json(completion.whole().await?).into_response())
}

fn encode(tokenizer: &crate::tokenizer::Tokenizer, text: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer
        .encode(text, true)
        .map_err(|e| ApiError::invalid("prompt", e.to_string()))
}

impl TextCompletion {
    /// Applies one event; returns the choice's new text (and finish reason when it ended).
    fn apply(
        &mut self,
        index: usize,
        event: RequestEvent,
    ) -> Result<Option<CompletionChoice>, ApiError> {
        let tokenizer = Arc::clone(&self.state.tokenizer);
        let Some(choice) = self.choices.get_mut(index) else {
            return Ok(None);
        };
        let (text, logprobs) = match event {
            RequestEvent::Token(token) => {
                if choice.output.stopped() {
                    return Ok(None);
                }
                let piece = choice.output.push(token.token)?;
                if choice.output.stopped() {
                    self.generation.stop_choice(index);
                }
                let logprobs = choice
                    .logprobs
                    .as_ref()
                    .map(|_| token_logprobs(&tokenizer, &token, choice.text_len));
                (piece.content, logprobs)
            }
            RequestEvent::Finished {
                reason,
                num_cached_tokens,
            } => {
                let piece = choice.output.finish()?;
                choice.finish = Some(finish_reason(reason, choice.output.stopped())?);
                let first_of_prompt = index.is_multiple_of(self.n);
                let prompt = self.generation.prompt_lens.get(index).copied().unwrap_or(0);
                self.usage.add(
                    if first_of_prompt { prompt } else { 0 },
                    choice.output.completion_tokens,
                    if first_of_prompt {
                        num_cached_tokens
                    } else {
                        0
                    },
                );
                (piece.content, None)
            }
            RequestEvent::Failed(message) => return Err(ApiError::Engine(message)),
        };
        choice.text_len += text.chars().count();
        if let (Some(all), Some(new)) = (&mut choice.logprobs, &logprobs) {
            all.tokens.extend(new.tokens.iter().cloned());
            all.token_logprobs.extend(&new.token_logprobs);
            all.top_logprobs.extend(new.top_logprobs.iter().cloned());
            all.text_offset.extend(&new.text_offset);
        }
        Ok(Some(CompletionChoice {
            index,
            text,
            logprobs,
            finish_reason: choice.finish.clone(),
        }))
    }

    async fn whole(mut self) -> Result<CompletionResponse, ApiError> {
        let mut texts = vec![String::new(); self.choices.len()];
        while let Some((index, event)) = self.generation.next().await {
            if let Some(piece) = self.apply(index, event)? {
                if let Some(text) = texts.get_mut(index) {
                    text.push_str(&piece.text);
                }
            }
        }
        let choices = self
            .choices
            .iter_mut()
            .zip(texts)
            .enumerate()
            .map(|(index, (choice, text))| CompletionChoice {
                index,
                text,
                logprobs: choice.logprobs.take(),
                finish_reason: Some(choice.finish.clone().unwrap_or_else(|| "abort".into())),
            })
            .collect();
        Ok(CompletionResponse {
            id: self.id,
            object: "text_completion".into(),
            created: self.created,
            model: self.state.config.served_model_name.clone(),
            choices,
            usage: Some(Some(self.usage)),
        })
    }

    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Option<Usage>>) -> Event {
        let chunk = CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.state.config.served_model_name.clone(),
            choices,
            usage,
        };
        Event::default().data(serde_json::to_string(&chunk).unwrap_or_default())
    }
}

/// Logprobs of one token; its text starts at character `offset` of the choice's text.
fn token_logprobs(
    tokenizer: &crate::tokenizer::Tokenizer,
    token: &TokenEvent,
    offset: usize,
) -> CompletionLogprobs {
    let top: BTreeMap<String, f32> = token
        .top_logprobs
        .iter()
        .map(|&(id, lp)| (token_text(tokenizer, id), lp))
        .collect();
    CompletionLogprobs {
        tokens: vec![token_text(tokenizer, token.token)],
        token_logprobs: vec![token.logprob.unwrap_or(f32::NAN)],
        top_logprobs: vec![top],
        text_offset: vec![offset],
    }
}

/// The SSE form; the stream owns the generation (dropping it aborts unfinished choices).
fn stream(
    completion: TextCompletion,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let start = (completion, VecDeque::<Event>::new(), false);
    let events =
        futures_util::stream::unfold(start, move |(mut c, mut queue, mut closed)| async move {
            loop {
                if let Some(event) = queue.pop_front() {
                    return Some((Ok(event), (c, queue, closed)));
                }
                if closed {
                    return None;
                }
                match c.generation.next().await {
                    Some((index, event)) => match c.apply(index, event) {
                        Ok(Some(choice))
                            if !choice.text.is_empty()
                                || choice.finish_reason.is_some()
                                || choice.logprobs.is_some() =>
                        {
                            let usage = include_usage.then_some(None);
                            queue.push_back(c.chunk(vec![choice], usage));
                        }
                        Ok(_) => {}
                        Err(error) => {
                            let body = serde_json::to_string(&error.body()).unwrap_or_default();
                            queue.push_back(Event::default().data(body));
                            queue.push_back(Event::default().data("[DONE]"));
                            closed = true;
                        }
                    },
                    None => {
                        if include_usage {
                            let usage = std::mem::take(&mut c.usage);
                            queue.push_back(c.chunk(Vec::new(), Some(Some(usage))));
                        }
                        queue.push_back(Event::default().data("[DONE]"));
                        closed = true;
                    }
                }
            }
        });
    Sse::new(events).keep_alive(KeepAlive::default())
}
