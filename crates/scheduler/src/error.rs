//! Errors returned by the scheduler's public methods.

use crate::{RequestId, TransitionError};
use thiserror::Error;

/// Everything the scheduler's API can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchedulerError {
    /// The configuration is inconsistent.
    #[error("invalid scheduler config: {0}")]
    Config(String),
    /// `submit` with an id that is still live.
    #[error("request {0} is already live")]
    DuplicateId(RequestId),
    /// An operation named a request that is not live (never submitted, or already ended).
    #[error("request {0} is not live")]
    UnknownRequest(RequestId),
    /// `submit` with an empty prompt.
    #[error("request {0} has an empty prompt")]
    EmptyPrompt(RequestId),
    /// `submit` with `max_new_tokens == 0`.
    #[error("request {0} asks for max_new_tokens = 0")]
    ZeroMaxNewTokens(RequestId),
    /// The prompt leaves no room for one output token within `max_context`.
    #[error(
        "request {id}: prompt of {prompt} tokens leaves no room below max_context {max_context}"
    )]
    PromptTooLong {
        /// The request.
        id: RequestId,
        /// Prompt length.
        prompt: usize,
        /// The configured limit.
        max_context: usize,
    },
    /// The prompt alone needs more KV pages than the pool has.
    #[error("request {id}: prompt needs {needed} pages, the pool has {pool}")]
    NeverFits {
        /// The request.
        id: RequestId,
        /// Pages the prompt (plus one output token) needs.
        needed: usize,
        /// Allocatable pages in the pool.
        pool: usize,
    },
    /// `commit` without a step in flight.
    #[error("commit of step {0} but no step is in flight")]
    NoStepInFlight(u64),
    /// `commit` out of order: steps are committed in the order they were planned.
    #[error("commit of step {got}, but the oldest step in flight is {expected}")]
    StepOutOfOrder {
        /// The oldest uncommitted step.
        expected: u64,
        /// The step named by the result.
        got: u64,
    },
    /// `commit` with a number of sampled tokens different from the plan's sampling rows.
    #[error("step {step} planned {expected} sampling rows, the result has {got} tokens")]
    ResultLength {
        /// The step.
        step: u64,
        /// Sampling rows in the plan.
        expected: usize,
        /// Tokens in the result.
        got: usize,
    },
    /// An accounting invariant does not hold (always a bug).
    #[error("scheduler integrity violated: {0}")]
    Integrity(String),
    /// An event that the request's current state does not accept.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}
