//! [`Generation`]: the engine requests behind one HTTP request (one per choice), admitted
//! against the server's limit and aborted on drop. The [`AbortGuard`] lives inside the
//! response (the SSE stream owns it), so a client that disconnects drops it and every
//! unfinished choice is aborted at the engine's next step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokenspeed_engine::RequestEvent;
use tokenspeed_scheduler::RequestSpec;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::generator::{EventSink, GenerateRequest, Generator};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::validate::Limits;

/// One choice to run: its prompt and output limit.
#[derive(Debug, Clone)]
pub struct ChoicePlan {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Output limit.
    pub max_tokens: usize,
}

/// Aborts the unfinished engine requests of an HTTP request when dropped, and holds its
/// admission permits until then.
pub struct AbortGuard {
    generator: Arc<dyn Generator>,
    metrics: Arc<Metrics>,
    ids: Vec<u64>,
    done: Vec<bool>,
    /// Set when dropped: a submission still running on the blocking pool (the HTTP request
    /// was cancelled while it waited) aborts what it submits after this point.
    dropped: Arc<AtomicBool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
        let mut aborted = false;
        for (&id, &done) in self.ids.iter().zip(&self.done) {
            if !done {
                self.generator.abort(id);
                aborted = true;
            }
        }
        if aborted {
            self.metrics
                .client_aborts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(ids = ?self.ids, "client went away: generation aborted");
        }
    }
}

/// The running choices of one HTTP request.
pub struct Generation {
    events: UnboundedReceiver<(usize, RequestEvent)>,
    guard: AbortGuard,
    /// Prompt length of each choice.
    pub prompt_lens: Vec<usize>,
    started: Instant,
    last_token: Vec<Option<Instant>>,
}

impl Generation {
    /// Admits and submits every choice (429 when the admission limit is reached, 503 when
    /// the engine is down).
    pub async fn start(
        state: &AppState,
        choices: Vec<ChoicePlan>,
        limits: &Limits,
        logprobs: Option<u32>,
    ) -> Result<Self, ApiError> {
        let vocab = state.tokenizer.vocab_size();
        if let Some((bad, _)) = limits.logit_bias.iter().find(|(t, _)| *t as usize >= vocab) {
            return Err(ApiError::invalid(
                "logit_bias",
                format!("token id {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        state.generator.health().map_err(ApiError::Unavailable)?;
        let wanted = u32::try_from(choices.len()).unwrap_or(u32::MAX);
        let permit = Arc::clone(&state.admission)
            .try_acquire_many_owned(wanted)
            .map_err(|_| ApiError::Overloaded {
                pending: state.config.max_pending - state.admission.available_permits(),
            })?;
        let (tx, events) = unbounded_channel();
        let mut requests = Vec::with_capacity(choices.len());
        for (index, choice) in choices.iter().enumerate() {
            let mut spec = RequestSpec::new(
                state.next_request_id(),
                choice.prompt.clone(),
                choice.max_tokens,
            );
            spec.sampling = limits.sampling;
            // Each choice of a seeded request gets its own (still reproducible) stream.
            spec.sampling.seed = limits.sampling.seed.map(|s| s.wrapping_add(index as u64));
            spec.stop_token_ids = limits.stop_token_ids.clone();
            spec.ignore_eos = limits.ignore_eos;
            spec.min_tokens = limits.min_tokens;
            spec.logit_bias = limits.logit_bias.clone();
            let sink = EventSink {
                index,
                tx: tx.clone(),
            };
            requests.push((GenerateRequest { spec, logprobs }, sink));
        }
        let ids: Vec<u64> = requests.iter().map(|(r, _)| r.spec.id).collect();
        // Live from the start: if this future is dropped (the client went away) while the
        // submission runs, the guard aborts every id, and the submission aborts what it
        // submits after that (aborting an id not submitted yet does nothing).
        let dropped = Arc::new(AtomicBool::new(false));
        let mut guard = AbortGuard {
            generator: Arc::clone(&state.generator),
            metrics: Arc::clone(&state.metrics),
            done: vec![false; ids.len()],
            ids,
            dropped: Arc::clone(&dropped),
            _permit: permit,
        };
        let generator = Arc::clone(&state.generator);
        // Submission may wait for the executor (e.g. the GIL): keep it off the async workers.
        let submitted = tokio::task::spawn_blocking(move || {
            let mut submitted = 0;
            for (request, sink) in requests {
                let id = request.spec.id;
                if let Err(e) = generator.submit(request, sink) {
                    return (submitted, Err(e));
                }
                submitted += 1;
                if dropped.load(Ordering::SeqCst) {
                    generator.abort(id);
                }
            }
            (submitted, Ok(()))
        })
        .await
        .map_err(|e| ApiError::Engine(format!("submission task failed: {e}")))?;
        // What never reached the engine needs no abort; what did is aborted if this fails.
        let (count, submitted) = submitted;
        for done in guard.done.iter_mut().skip(count) {
            *done = true;
        }
        submitted.map_err(ApiError::Engine)?;
        let prompt_tokens: usize = choices.iter().map(|c| c.prompt.len()).sum();
        state
            .metrics
            .prompt_tokens
            .fetch_add(prompt_tokens as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            events,
            last_token: vec![None; choices.len()],
            prompt_lens: choices.iter().map(|c| c.prompt.len()).collect(),
            guard,
            started: Instant::now(),
        })
    }

    /// Number of choices.
    pub fn len(&self) -> usize {
        self.prompt_lens.len()
    }

    /// Whether there are no choices.
    pub fn is_empty(&self) -> bool {
        self.prompt_lens.is_empty()
    }

    /// Whether every choice has ended.
    pub fn all_done(&self) -> bool {
        self.guard.done.iter().all(|&d| d)
    }

    /// The next event of any choice (`None` once all ended). Records latency metrics.
    pub async fn next(&mut self) -> Option<(usize, RequestEvent)> {
        if self.all_done() {
            return None;
        }
        let (index, event) = self.events.recv().await?;
        let now = Instant::now();
        let metrics = &self.guard.metrics;
        match &event {
            RequestEvent::Token(_) => {
                metrics
                    .generation_tokens
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match self.last_token.get(index).copied().flatten() {
                    None => metrics.ttft.observe(now - self.started),
                    Some(last) => metrics.inter_token.observe(now - last),
                }
                if let Some(slot) = self.last_token.get_mut(index) {
                    *slot = Some(now);
                }
            }
            RequestEvent::Finished { .. } | RequestEvent::Failed(_) => {
                metrics.e2e.observe(now - self.started);
                if let Some(done) = self.guard.done.get_mut(index) {
                    *done = true;
                }
            }
        }
        Some((index, event))
    }

    /// Ends one choice early (a stop string matched): the engine aborts it, and its
    /// `Finished` event still arrives.
    pub fn stop_choice(&self, index: usize) {
        if let Some(&id) = self.guard.ids.get(index) {
            self.guard.generator.abort(id);
        }
    }
}
