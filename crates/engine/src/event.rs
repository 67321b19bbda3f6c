//! What a request's stream receives.

use tokenspeed_cache::TokenId;
use tokenspeed_scheduler::FinishReason;

/// One committed output token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// The token.
    pub token: TokenId,
    /// Its log-probability under the raw model distribution, if logprobs were requested.
    pub logprob: Option<f32>,
    /// The most likely tokens and their log-probabilities, best first (as many as requested).
    pub top_logprobs: Vec<(TokenId, f32)>,
}

/// Where a request's events go. Called on the engine thread, so it must not block: a channel
/// sender, or a callback into an async runtime's channel.
pub trait RequestSink: Send {
    /// Delivers one event; false once nobody listens any more (the engine then just stops
    /// sending; aborting is the caller's business).
    fn send(&self, event: RequestEvent) -> bool;
}

impl RequestSink for std::sync::mpsc::Sender<RequestEvent> {
    fn send(&self, event: RequestEvent) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
}

/// An event on a request's stream. The stream ends after `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestEvent {
    /// A new output token.
    Token(TokenEvent),
    /// The request ended.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Prompt tokens served from the prefix cache when the request was first admitted.
        num_cached_tokens: usize,
    },
    /// The request could not be run (rejected at submission, or the engine failed).
    Failed(String),
}
