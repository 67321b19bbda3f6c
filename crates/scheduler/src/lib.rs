//! `tokenspeed-scheduler`: the request state machine, chunked-prefill batch planning and
//! overlap bookkeeping of the TokenSpeed engine, on top of `tokenspeed-cache`.
//!
//! # Model
//! * Every request is a [`Request`] whose variants own exactly their resources: `Waiting`
//!   nothing; `Prefilling` / `Decoding` a [`Resident`] (lock on the matched cache path,
//!   private pages, working state slot, snapshot slots); `Finished` nothing. Transitions
//!   consume the state; an illegal event is a [`TransitionError`].
//! * [`Scheduler::schedule`] plans a step as a [`StepPlan`] of flat arrays: resident requests
//!   oldest first (decode one token, or the next prompt chunk, chunks ending on page
//!   boundaries), then admissions. Memory comes from the pools, then from evicting the
//!   cache, then from preempting the youngest resident request (it is recomputed / resumed
//!   from the cache later, first in line).
//! * Overlap: step N+1 may be planned before step N is committed. A decode whose input is
//!   step N's sample gets [`PREV_STEP_TOKEN`] plus the index of that sampling row. Results
//!   for a request that ended or was preempted in between are ignored.
//! * State snapshots (what makes hybrid prefix hits possible): at the last page boundary of
//!   every prompt chunk (published when the step commits), at every page boundary in decode
//!   (newest kept), and when a request ends the full pages of its committed tokens are
//!   published with the newest snapshot on their terminal node.
//!
//! # Executor contract
//! * Plans run in the order they were made, on one stream. Pages and slots freed while a
//!   step is in flight (abort, preemption, dedup on publish) may appear in the very next
//!   plan; that is safe only because of this ordering.
//! * Before a plan's sequences run: copy state slots `copy_src[i] -> copy_dst[i]` (prefix
//!   hits, copy on write), zero `zero_slots`, and fill `input_ids[prev_token_dst[i]]` with
//!   the previous plan's sampled token of row `prev_token_src[i]`.
//! * A sequence with `checkpoint_slots[i] >= 0` writes the recurrent state (conv window and
//!   SSM state) after exactly `checkpoint_offsets[i]` tokens of context into that slot.
//!   Prefill rows start on a page boundary, so the offset is a whole number of pages into
//!   the row; a decode row's offset is its single token's position + 1.
//! * `min_tokens` is enforced here only as "no stop before it"; the sampler should also
//!   mask stop tokens until then.
//!
//! # Example
//! ```
//! use tokenspeed_cache::{PagePool, RadixCache, StatePool};
//! use tokenspeed_scheduler::{RequestSpec, Scheduler, SchedulerConfig, StepResult};
//!
//! let cache = RadixCache::new(PagePool::new(65, 4)?, StatePool::new(9)?);
//! let config = SchedulerConfig { max_running: 4, max_step_tokens: 16, ..Default::default() };
//! let mut sched = Scheduler::new(config, cache)?;
//! sched.submit(RequestSpec::new(7, (0..10).collect(), 2))?;
//! let plan = sched.schedule(); // the whole 10-token prompt fits the budget
//! assert_eq!(plan.num_tokens(), 10);
//! let out = sched.commit(StepResult { step: plan.step, sampled: vec![42] })?;
//! assert_eq!(out.tokens, vec![(7, 42)]);
//! let plan = sched.schedule(); // one decode token: 42 at position 10
//! assert_eq!((plan.input_ids.as_slice(), plan.positions.as_slice()), (&[42][..], &[10][..]));
//! let out = sched.commit(StepResult { step: plan.step, sampled: vec![5] })?;
//! assert_eq!(out.finished.len(), 1); // max_new_tokens = 2 reached
//! sched.check_integrity()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod admit;
mod budget;
mod commit;
mod config;
mod entries;
mod error;
mod fsm;
mod integrity;
mod lifecycle;
mod memory;
mod plan;
mod request;
mod resident;
mod sampling;
mod schedule;
mod scheduler;
mod stats;

pub use budget::StepBudget;
pub use commit::{CommitOutput, StepResult};
pub use config::SchedulerConfig;
pub use error::SchedulerError;
pub use fsm::{Event, Request, StateName, Transition, TransitionError};
pub use plan::{Row, RowTokens, StateInit, StepPlan, PREV_STEP_TOKEN};
pub use request::{FinishReason, RequestError, RequestId, RequestSpec, Sequence};
pub use resident::{Resident, Snapshot, SnapshotKind};
pub use sampling::{SamplingBatch, SamplingParams};
pub use scheduler::Scheduler;
pub use stats::SchedulerStats;
