//! Applying a step's results: advance the committed cursors, publish prefill snapshots,
//! append sampled tokens, end requests that hit a stop condition. Rows of requests that
//! ended or were preempted after the step was planned are stale and ignored.

use tokenspeed_cache::TokenId;

use crate::{FinishReason, RequestError, RequestId, Scheduler, SchedulerError};

/// What the executor reports for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The [`StepPlan::step`](crate::StepPlan::step) it answers.
    pub step: u64,
    /// One sampled token per sampling row of the plan, in order.
    pub sampled: Vec<TokenId>,
}

/// What a commit changed, for streaming to clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutput {
    /// New tokens, in plan order.
    pub tokens: Vec<(RequestId, TokenId)>,
    /// Requests that ended, with the reason.
    pub finished: Vec<(RequestId, FinishReason)>,
    /// Rows ignored because their request ended or was preempted after planning.
    pub stale_rows: usize,
}

impl Scheduler {
    /// Applies the results of the oldest step in flight.
    pub fn commit(&mut self, result: StepResult) -> Result<CommitOutput, SchedulerError> {
        let front = self
            .inflight
            .front()
            .ok_or(SchedulerError::NoStepInFlight(result.step))?;
        if front.step != result.step {
            return Err(SchedulerError::StepOutOfOrder {
                expected: front.step,
                got: result.step,
            });
        }
        if front.samples != result.sampled.len() {
            let (expected, got) = (front.samples, result.sampled.len());
            return Err(SchedulerError::ResultLength {
                step: result.step,
                expected,
                got,
            });
        }
        let Some(step) = self.inflight.pop_front() else {
            return Err(SchedulerError::NoStepInFlight(result.step));
        };
        let mut out = CommitOutput::default();
        for row in &step.rows {
            let Some(entry) = self.entries.live_ticket(row.key, row.ticket) else {
                out.stale_rows += 1;
                continue;
            };
            let Some(resident) = entry.request.resident_mut() else {
                out.stale_rows += 1;
                continue;
            };
            let mut reason = None;
            if let Some(snap) = resident.commit(step.step, row.end) {
                if resident
                    .publish(
                        &self.mem.cache,
                        entry.seq.tokens(),
                        snap.offset,
                        Some(snap.slot),
                    )
                    .is_err()
                {
                    reason = Some(FinishReason::Error(RequestError::CacheInsert));
                }
            }
            if let (None, Some(sample_row)) = (reason, row.sample_row) {
                if entry.pending_sample == Some((step.step, sample_row)) {
                    entry.pending_sample = None;
                }
                let token = result.sampled[sample_row as usize];
                out.tokens.push((entry.seq.spec().id, token));
                reason = entry
                    .seq
                    .push(token, &self.config.eos_token_ids, self.config.max_context);
            }
            if let Some(reason) = reason {
                if let Some(id) = self.end(row.key, reason) {
                    out.finished.push((id, reason));
                }
            }
        }
        Ok(out)
    }
}
