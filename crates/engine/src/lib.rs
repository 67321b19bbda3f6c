//! `tokenspeed-engine`: the engine loop that joins the control plane (the
//! [`Scheduler`](tokenspeed_scheduler::Scheduler)) to an [`Executor`] (the model, normally
//! the Python executor hosted through PyO3).
//!
//! One thread owns the scheduler and the executor. Each step it plans a
//! [`StepPlan`](tokenspeed_scheduler::StepPlan), hands it to [`Executor::launch`] (which only
//! enqueues device work), and collects the sampled tokens of a step with
//! [`Executor::collect`]. With `overlap` the loop plans and launches step N+1 *before*
//! collecting step N, so the host's planning hides behind the device's work; without it the
//! two strictly alternate. Committed tokens are streamed to each request's channel as
//! [`RequestEvent`]s. The thread never blocks on anything but the executor and, when idle,
//! its command channel.
//!
//! When a step fails ([`ExecutorError`]), the requests of every uncollected step fail, the
//! executor is [reset](Executor::reset) and the loop goes on; a fatal error, an executor that
//! cannot reset, or [`MAX_CONSECUTIVE_STEP_FAILURES`] failed steps in a row stop the engine
//! (every live request fails and [`Engine::stopped`] says why).
//!
//! # Example
//! ```
//! use tokenspeed_cache::{PagePool, RadixCache, StatePool};
//! use tokenspeed_engine::{Engine, EngineOptions, Executor, ExecutorError, Launch, StepOutput,
//!     RequestEvent, Submission};
//! use tokenspeed_scheduler::{RequestSpec, Scheduler, SchedulerConfig};
//!
//! /// A toy executor whose "model" always answers the last input token + 1.
//! struct Echo(Vec<(u64, Vec<u32>)>);
//! impl Executor for Echo {
//!     type Meta = ();
//!     fn launch(&mut self, work: Launch<'_, ()>) -> Result<(), ExecutorError> {
//!         let plan = work.plan;
//!         let next = plan.logits_indices.iter().map(|&i| plan.input_ids[i as usize] + 1);
//!         self.0.push((plan.step, next.collect()));
//!         Ok(())
//!     }
//!     fn collect(&mut self, step: u64) -> Result<StepOutput, ExecutorError> {
//!         let (s, sampled) = self.0.remove(0);
//!         assert_eq!(s, step);
//!         Ok(StepOutput::tokens_only(sampled))
//!     }
//! }
//!
//! let cache = RadixCache::new(PagePool::new(33, 4)?, StatePool::new(9)?);
//! let config = SchedulerConfig { max_running: 4, max_step_tokens: 16, ..Default::default() };
//! let scheduler = Scheduler::new(config, cache)?;
//! // Known tokens only: without overlap every decode input is committed before planning.
//! let engine = Engine::spawn(scheduler, Echo(Vec::new()), EngineOptions { overlap: false })?;
//! let events = engine.submit(Submission::new(RequestSpec::new(1, vec![5, 6, 7], 3), ()))?;
//! let tokens: Vec<u32> = events.iter().filter_map(|e| match e {
//!     RequestEvent::Token(t) => Some(t.token),
//!     _ => None,
//! }).collect();
//! assert_eq!(tokens, vec![8, 9, 10]);
//! engine.check_integrity()?;
//! engine.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod engine;
mod error;
mod event;
mod executor;
mod step_loop;

pub use engine::{Engine, EngineOptions, Submission};
pub use error::EngineError;
pub use event::{RequestEvent, RequestSink, TokenEvent};
pub use executor::{Admitted, Executor, ExecutorError, Launch, StepOutput};
pub use step_loop::MAX_CONSECUTIVE_STEP_FAILURES;
