//! The engine thread: receive commands, plan, launch, collect, commit, stream.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use tokenspeed_scheduler::{CommitOutput, FinishReason, RequestId, StepPlan, StepResult};

use crate::engine::{Command, Shared};
use crate::{
    Admitted, EngineOptions, Executor, ExecutorError, Launch, RequestEvent, RequestSink,
    StepOutput, Submission, TokenEvent,
};

/// Why live requests fail when every engine handle is gone.
const GONE: &str = "the engine handle was dropped";

/// Step failures in a row after which the executor is deemed broken (the engine stops).
pub const MAX_CONSECUTIVE_STEP_FAILURES: u32 = 3;

/// Engine-side record of a live request.
struct Live<M> {
    meta: M,
    logprobs: Option<u32>,
    prompt_len: usize,
    events: Box<dyn RequestSink>,
    /// Prompt tokens served from the cache at first admission (known once planned).
    num_cached: Option<usize>,
    /// Preemption count when the executor last heard of it (`None`: never resident yet).
    admitted_at: Option<u32>,
}

/// A launched (or launching), uncollected step: its requests, and which request each
/// sampling row belongs to.
struct Inflight {
    step: u64,
    request_ids: Vec<RequestId>,
    sample_ids: Vec<RequestId>,
}

pub(crate) struct StepLoop<E: Executor> {
    shared: Arc<Shared>,
    executor: E,
    inbox: Receiver<Command<E::Meta>>,
    options: EngineOptions,
    live: HashMap<RequestId, Live<E::Meta>>,
    inflight: VecDeque<Inflight>,
    /// Requests ended since the last launch (the executor drops their state).
    released: Vec<RequestId>,
    /// Step failures since the last successful collect.
    failures_in_a_row: u32,
}

impl<E: Executor> StepLoop<E> {
    pub fn new(
        shared: Arc<Shared>,
        executor: E,
        inbox: Receiver<Command<E::Meta>>,
        options: EngineOptions,
    ) -> Self {
        Self {
            shared,
            executor,
            inbox,
            options,
            live: HashMap::new(),
            inflight: VecDeque::new(),
            released: Vec::new(),
            failures_in_a_row: 0,
        }
    }

    /// Runs until shutdown or an executor failure; every live request then gets `Failed`.
    pub fn run(mut self) {
        let (Ok(why) | Err(why)) = self.serve();
        self.shared.stop(why.clone());
        for (_, live) in self.live.drain() {
            let _ = live.events.send(RequestEvent::Failed(why.clone()));
        }
    }

    /// Serves until shut down (`Ok(why)`) or the executor is broken (`Err(why)`).
    fn serve(&mut self) -> Result<String, String> {
        loop {
            if let Some(why) = self.receive_commands() {
                return Ok(why);
            }
            let plan = self.shared.scheduler().schedule();
            for &(id, reason) in &plan.finished {
                self.finish(id, reason);
            }
            if let Err(error) = self.run_step(&plan) {
                self.recover(error)?;
            }
        }
    }

    /// Launches `plan` (unless empty) and collects what overlap does not keep running.
    fn run_step(&mut self, plan: &StepPlan) -> Result<(), ExecutorError> {
        if !plan.is_empty() {
            self.launch(plan)?;
        }
        // Overlap keeps the step just launched running while the previous one is committed.
        let keep = usize::from(self.options.overlap && !plan.is_empty());
        while self.inflight.len() > keep {
            self.collect_and_commit()?;
        }
        Ok(())
    }

    /// After a failed step: fails the requests of every uncollected step (a later step may
    /// read an earlier one's tokens), settles those steps with the scheduler and resets the
    /// executor. `Err` (the engine stops) when the failure is fatal, the executor cannot
    /// reset, or steps keep failing.
    fn recover(&mut self, error: ExecutorError) -> Result<(), String> {
        self.failures_in_a_row += 1;
        if error.fatal {
            return Err(format!("the executor failed fatally: {error}"));
        }
        if self.failures_in_a_row >= MAX_CONSECUTIVE_STEP_FAILURES {
            return Err(format!(
                "the executor failed {} steps in a row (last: {error})",
                self.failures_in_a_row
            ));
        }
        if let Err(reset) = self.executor.reset() {
            return Err(format!("{error}; the executor cannot recover: {reset}"));
        }
        let message = format!("{error} (the request was in the failed step)");
        let steps: Vec<Inflight> = self.inflight.drain(..).collect();
        for id in steps.iter().flat_map(|s| &s.request_ids) {
            if let Some(live) = self.live.remove(id) {
                let _ = self.shared.scheduler().abort(*id);
                let _ = live.events.send(RequestEvent::Failed(message.clone()));
                self.released.push(*id);
            }
        }
        // Every row of these steps is stale now: placeholder tokens just retire the steps.
        let mut scheduler = self.shared.scheduler();
        for step in steps {
            let sampled = vec![0; step.sample_ids.len()];
            let result = StepResult {
                step: step.step,
                sampled,
            };
            if let Err(e) = scheduler.commit(result) {
                return Err(format!("{error}; retiring step {}: {e}", step.step));
            }
        }
        Ok(())
    }

    /// Applies pending commands, blocking for one when there is nothing to do. Returns why
    /// on shutdown.
    fn receive_commands(&mut self) -> Option<String> {
        loop {
            let idle = self.live.is_empty() && self.inflight.is_empty();
            let command = if idle {
                match self.inbox.recv() {
                    Ok(command) => command,
                    Err(_) => return Some(GONE.into()),
                }
            } else {
                match self.inbox.try_recv() {
                    Ok(command) => command,
                    Err(TryRecvError::Empty) => return None,
                    Err(TryRecvError::Disconnected) => return Some(GONE.into()),
                }
            };
            match command {
                Command::Submit(submission, events) => self.submit(submission, events),
                Command::Abort(id) => self.abort(id),
                Command::Shutdown(why) => return Some(why),
            }
        }
    }

    fn submit(&mut self, submission: Submission<E::Meta>, events: Box<dyn RequestSink>) {
        let Submission {
            spec,
            logprobs,
            meta,
        } = submission;
        let (id, prompt_len) = (spec.id, spec.prompt.len());
        if self.live.contains_key(&id) {
            let _ = events.send(RequestEvent::Failed(format!(
                "request id {id} is already live"
            )));
            return;
        }
        if let Err(e) = self.shared.scheduler().submit(spec) {
            let _ = events.send(RequestEvent::Failed(e.to_string()));
            return;
        }
        let live = Live {
            meta,
            logprobs,
            prompt_len,
            events,
            num_cached: None,
            admitted_at: None,
        };
        self.live.insert(id, live);
    }

    fn abort(&mut self, id: RequestId) {
        if !self.live.contains_key(&id) {
            return; // already ended: its stream is closed
        }
        if self.shared.scheduler().abort(id).is_ok() {
            self.finish(id, FinishReason::Abort);
        }
    }

    /// Sends `Finished` and forgets the request.
    fn finish(&mut self, id: RequestId, reason: FinishReason) {
        if let Some(live) = self.live.remove(&id) {
            let num_cached_tokens = live.num_cached.unwrap_or(0);
            let _ = live.events.send(RequestEvent::Finished {
                reason,
                num_cached_tokens,
            });
            self.released.push(id);
        }
    }

    fn launch(&mut self, plan: &StepPlan) -> Result<(), ExecutorError> {
        let mut admitted = Vec::new();
        {
            let scheduler = self.shared.scheduler();
            for (i, &id) in plan.request_ids.iter().enumerate() {
                let Some(live) = self.live.get_mut(&id) else {
                    continue;
                };
                live.num_cached.get_or_insert(plan.num_cached[i] as usize);
                let preemptions = scheduler.preemptions_of(id).unwrap_or(0);
                if live.admitted_at != Some(preemptions) {
                    live.admitted_at = Some(preemptions);
                    let tokens = scheduler.tokens_of(id).unwrap_or(&[]);
                    let output = tokens.get(live.prompt_len..).unwrap_or(&[]).to_vec();
                    admitted.push((id, output));
                }
            }
        }
        let sample_ids: Vec<RequestId> = plan
            .sample_seqs
            .iter()
            .map(|&s| plan.request_ids[s as usize])
            .collect();
        let num_logprobs: Vec<i32> = sample_ids
            .iter()
            .map(|id| {
                let n = self.live.get(id).and_then(|l| l.logprobs);
                n.map_or(-1, |n| n.min(i32::MAX as u32) as i32)
            })
            .collect();
        let admitted = admitted
            .into_iter()
            .filter_map(|(id, output)| {
                let meta = &self.live.get(&id)?.meta;
                Some(Admitted { id, meta, output })
            })
            .collect();
        // Recorded before launching: a failed launch leaves a step for `recover` to settle.
        self.inflight.push_back(Inflight {
            step: plan.step,
            request_ids: plan.request_ids.clone(),
            sample_ids,
        });
        let work = Launch {
            plan,
            admitted,
            released: &self.released,
            num_logprobs: &num_logprobs,
        };
        self.executor.launch(work)?;
        self.released.clear();
        Ok(())
    }

    /// Collects the oldest uncollected step; it stays recorded until collected, so a failure
    /// leaves it for `recover`.
    fn collect_and_commit(&mut self) -> Result<(), ExecutorError> {
        let Some(front) = self.inflight.front() else {
            return Ok(());
        };
        let output = self.executor.collect(front.step)?;
        output.validate(front.sample_ids.len())?;
        let Some(step) = self.inflight.pop_front() else {
            return Ok(());
        };
        self.failures_in_a_row = 0;
        let result = StepResult {
            step: step.step,
            sampled: output.sampled.clone(),
        };
        // The scheduler refusing a well-formed result is a bug in the engine: stop.
        let committed = self
            .shared
            .scheduler()
            .commit(result)
            .map_err(|e| ExecutorError::fatal(format!("commit of step {}: {e}", step.step)))?;
        self.stream(&step, &output, committed);
        Ok(())
    }

    /// Sends committed tokens (with their logprobs) and finishes.
    fn stream(&mut self, step: &Inflight, output: &StepOutput, committed: CommitOutput) {
        // Committed tokens come in plan order, a subsequence of the sampling rows.
        let mut row = 0;
        for (id, token) in committed.tokens {
            while row < step.sample_ids.len() && step.sample_ids[row] != id {
                row += 1;
            }
            let Some(live) = self.live.get(&id) else {
                continue;
            };
            let event = token_event(output, row, token, live.logprobs);
            let _ = live.events.send(RequestEvent::Token(event));
            row += 1;
        }
        for (id, reason) in committed.finished {
            self.finish(id, reason);
        }
    }
}

/// The token of sampling row `row` with the logprobs its request asked for.
fn token_event(output: &StepOutput, row: usize, token: u32, logprobs: Option<u32>) -> TokenEvent {
    let Some(n) = logprobs else {
        return TokenEvent {
            token,
            logprob: None,
            top_logprobs: Vec::new(),
        };
    };
    let n = (n as usize).min(output.top_k);
    let start = row * output.top_k;
    let top = (start..start + n)
        .filter_map(|i| Some((*output.top_ids.get(i)?, *output.top_logprobs.get(i)?)))
        .collect();
    TokenEvent {
        token,
        logprob: output.logprobs.get(row).copied(),
        top_logprobs: top,
    }
}
