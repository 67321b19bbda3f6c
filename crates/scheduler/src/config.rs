//! Scheduler limits and their validation.

use crate::SchedulerError;
use tokenspeed_cache::TokenId;

/// Limits of the batch planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most requests resident at once (prefilling + decoding): one state slot each.
    pub max_running: usize,
    /// Token budget of one step (decode tokens + prefill chunk tokens).
    ///
    /// Must be at least `max_running - 1 + page_size`, so that beside a full batch of
    /// decodes every step can advance a prefill by at least one page (liveness).
    pub max_step_tokens: usize,
    /// Most tokens (prompt + output) a sequence may reach; it ends with
    /// [`FinishReason::Length`](crate::FinishReason::Length) there.
    pub max_context: usize,
    /// The model's end-of-sequence token ids (ignored by requests with `ignore_eos`).
    pub eos_token_ids: Vec<TokenId>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_running: 256,
            max_step_tokens: 8192,
            max_context: 262_144,
            eos_token_ids: Vec::new(),
        }
    }
}

impl SchedulerConfig {
    /// Checks the limits against each other and against the pools' sizes.
    pub fn validate(&self, page_size: usize, pool_slots: usize) -> Result<(), SchedulerError> {
        let bad = |reason: String| Err(SchedulerError::Config(reason));
        if self.max_running == 0 {
            return bad("max_running must be >= 1".into());
        }
        let min_budget = self.max_running - 1 + page_size;
        if self.max_step_tokens < min_budget {
            return bad(format!(
                "max_step_tokens {} < max_running - 1 + page_size = {min_budget}: a full decode \
                 batch would leave no room to advance a prefill by one page",
                self.max_step_tokens
            ));
        }
        if self.max_context < 2 {
            return bad(format!(
                "max_context must be >= 2, got {}",
                self.max_context
            ));
        }
        // One working slot, plus the checkpoint a prefix hit copies from while it is pinned.
        if pool_slots < 2 {
            return bad(format!(
                "the state pool needs >= 2 usable slots, has {pool_slots}"
            ));
        }
        Ok(())
    }
}
