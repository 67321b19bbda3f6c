//! The contract between the engine loop and whatever runs the model.

use tokenspeed_cache::TokenId;
use tokenspeed_scheduler::{RequestId, StepPlan};

/// A request that becomes resident in this step: first admission, or readmission after a
/// preemption (then `output` holds the tokens it had generated, which the executor needs for
/// penalties).
#[derive(Debug)]
pub struct Admitted<'a, M> {
    /// The request.
    pub id: RequestId,
    /// What was submitted with it for the executor (prompt, sampling details).
    pub meta: &'a M,
    /// Output tokens committed so far.
    pub output: Vec<TokenId>,
}

/// One step of work for [`Executor::launch`].
#[derive(Debug)]
pub struct Launch<'a, M> {
    /// The scheduler's plan (flat arrays).
    pub plan: &'a StepPlan,
    /// Requests that became resident with this step.
    pub admitted: Vec<Admitted<'a, M>>,
    /// Requests that ended since the previous launch: drop their per-request state.
    pub released: &'a [RequestId],
    /// Per sampling row: how many top logprobs to return; `-1` for none, `0` for only the
    /// sampled token's logprob.
    pub num_logprobs: &'a [i32],
}

/// The sampled tokens of one step, one entry per sampling row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutput {
    /// Sampled token per row.
    pub sampled: Vec<TokenId>,
    /// Logprob of the sampled token per row (empty when no row asked for logprobs).
    pub logprobs: Vec<f32>,
    /// Number of top entries per row in `top_ids` / `top_logprobs` (the widest request).
    pub top_k: usize,
    /// `rows x top_k` most likely token ids, best first.
    pub top_ids: Vec<TokenId>,
    /// `rows x top_k` log-probabilities matching `top_ids`.
    pub top_logprobs: Vec<f32>,
}

impl StepOutput {
    /// An output carrying only sampled tokens.
    pub fn tokens_only(sampled: Vec<TokenId>) -> Self {
        Self {
            sampled,
            ..Self::default()
        }
    }

    /// Checks the shapes against `rows` sampling rows.
    pub fn validate(&self, rows: usize) -> Result<(), ExecutorError> {
        let bad = |what: String| Err(ExecutorError::new(format!("collect() returned {what}")));
        if self.sampled.len() != rows {
            return bad(format!("{} tokens for {rows} rows", self.sampled.len()));
        }
        if !self.logprobs.is_empty() && self.logprobs.len() != rows {
            return bad(format!("{} logprobs for {rows} rows", self.logprobs.len()));
        }
        let top = rows * self.top_k;
        if self.top_ids.len() != top || self.top_logprobs.len() != top {
            return bad(format!(
                "{} top ids / {} top logprobs for {rows} rows x top {}",
                self.top_ids.len(),
                self.top_logprobs.len(),
                self.top_k
            ));
        }
        Ok(())
    }
}

/// An executor failure (the message is shown to every affected request).
///
/// A step failure (the default) fails only the requests of the steps in flight: the engine
/// calls [`Executor::reset`] and goes on serving. A fatal one (the device is unusable, e.g. a
/// sticky CUDA error) stops the engine: every live request fails and the engine reports
/// itself stopped (the server's `/health` then answers 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("executor: {message}")]
pub struct ExecutorError {
    /// What went wrong.
    pub message: String,
    /// Whether the executor can no longer run any step.
    pub fatal: bool,
}

impl ExecutorError {
    /// A failure of one step (recoverable through [`Executor::reset`]).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fatal: false,
        }
    }

    /// A failure after which the executor cannot run anything.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fatal: true,
        }
    }
}

/// Runs the model. `launch` must return as soon as the step's work is enqueued; `collect`
/// waits for a launched step and returns its samples. Steps are collected in launch order,
/// and at most two are launched and uncollected at once (overlap depth 1). A decode row
/// whose input is [`PREV_STEP_TOKEN`](tokenspeed_scheduler::PREV_STEP_TOKEN) takes the
/// token sampled by the previous launched step (`prev_token_src` row), which the executor
/// keeps on the device.
pub trait Executor: Send {
    /// Per-request payload handed back in [`Admitted::meta`].
    type Meta: Send;

    /// Enqueues one step.
    fn launch(&mut self, work: Launch<'_, Self::Meta>) -> Result<(), ExecutorError>;

    /// Waits for step `step` (the oldest launched, uncollected one) and returns its samples.
    fn collect(&mut self, step: u64) -> Result<StepOutput, ExecutorError>;

    /// Called after `launch` or `collect` failed: drop every launched, uncollected step
    /// (the engine fails their requests and releases them with the next launch) and the
    /// device-side previous-step tokens, so the next launch starts clean. The default cannot
    /// recover, which makes every failure fatal.
    fn reset(&mut self) -> Result<(), ExecutorError> {
        Err(ExecutorError::fatal(
            "this executor cannot recover from a failed step",
        ))
    }
}
